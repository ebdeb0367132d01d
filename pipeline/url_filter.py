"""The URL blocklist step: datatrove's URLFilter rules and lists, held in 40 MB instead of 800.

The lists are the ones datatrove ships in its wheel (the UT1 blocklists, `url_filterblacklistsv0_3_0.tar.gz`:
4.6 million domains and 20 thousand URLs; banned, soft-banned and banned sub-words), judged as its
URLFilter judges them: the registered domain or the full host on the domain list, the URL on the URL list,
a banned word or `soft_word_threshold` soft-banned words among the URL's alphanumeric words, or a banned
sub-word anywhere in its letters and digits. Two differences, both for running on a cluster:
- datatrove keeps the domains as a Python set (~800 MB and 5 s per worker) and extracts the tarball into
  the user's Hugging Face cache; here they are read from the wheel as a stream into sorted 64-bit hashes
  (~37 MB; the process's own `hash`, so nothing is stored) and nothing is written.
- tldextract uses its bundled public-suffix snapshot: it never tries the network.
"""

from __future__ import annotations

import itertools
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import ahocorasick
import numpy as np
from datatrove.utils._import_utils import ASSETS_PATH
from tldextract import TLDExtract

_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
BLOCKLISTS = "url_filterblacklistsv0_3_0.tar.gz"


@dataclass(frozen=True)
class URLFilterConfig:
    enabled: bool = True
    use_integrated_lists: bool = True  # datatrove's lists; off: only the extra ones below
    soft_word_threshold: int = 2
    extra_domains: tuple[str, ...] = ()
    extra_urls: tuple[str, ...] = ()
    banned_words: tuple[str, ...] = ()
    banned_subwords: tuple[str, ...] = ()
    soft_banned_words: tuple[str, ...] = ()


def _normalise(word: str) -> str:
    return _NOT_ALNUM.sub("", word).lower()


def _entries(lines: Iterable[str], normalise: bool) -> Iterator[str]:
    # as datatrove parses its lists: a line starting with "#" is a comment (even "#xx" in banned_words)
    for line in lines:
        if line and line[0] != "#":
            yield _normalise(line) if normalise else line.strip()


def _hash(value: str) -> int:
    return hash(value.encode())  # lists are hashed as bytes, straight from the tarball


def _hashes(values: Iterable[bytes]) -> np.ndarray:
    return np.unique(np.fromiter(map(hash, values), np.int64))


def _in(hashes: np.ndarray, value: str) -> bool:
    h = _hash(value)
    i = int(np.searchsorted(hashes, h))
    return i < len(hashes) and hashes[i] == h


def _tar_entries(name: str, block: int = 8 << 20) -> Iterator[bytes]:
    """The stripped, non-comment lines of one list in the tarball, read in blocks (never whole)."""
    with tarfile.open(os.path.join(ASSETS_PATH, BLOCKLISTS), "r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None, f"{BLOCKLISTS} has no {name}"
        rest = b""
        while chunk := member.read(block):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from (x.strip() for x in lines if x and x[:1] != b"#")
        if rest.strip():
            yield rest.strip()


def _asset_lines(name: str) -> list[str]:
    with open(os.path.join(ASSETS_PATH, name), encoding="utf-8") as f:
        return f.readlines()


class URLFilter:
    name = "url"

    def __init__(self, cfg: URLFilterConfig) -> None:
        lists = cfg.use_integrated_lists
        extra = (x.encode() for x in _entries(cfg.extra_domains, False))
        self.domains = _hashes(itertools.chain(extra, _tar_entries("domains") if lists else ()))
        extra = (x.encode() for x in _entries(cfg.extra_urls, False))
        self.urls = _hashes(itertools.chain(extra, _tar_entries("urls") if lists else ()))

        def words(extra: tuple[str, ...], asset: str) -> frozenset[str]:
            return frozenset(_entries([*extra, *(_asset_lines(asset) if lists else [])], True))

        self.banned_words = words(cfg.banned_words, "banned_words.txt")
        self.soft_banned_words = words(cfg.soft_banned_words, "soft_banned_words.txt")
        self.soft_word_threshold = cfg.soft_word_threshold
        self.subwords = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for i, word in enumerate(words(cfg.banned_subwords, "banned_subwords.txt")):
            self.subwords.add_word(word, i)
        self.has_subwords = len(self.subwords) > 0
        if self.has_subwords:
            self.subwords.make_automaton()
        self.tld = TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot, no network

    def check(self, url: str) -> str | None:
        """None to keep, or the reason the URL is blocked (`url.domain`, `url.banned_word`...)."""
        if not url:
            return None  # a document without a URL (a WET record of its own): nothing to judge
        info = self.tld(url)
        if _in(self.domains, info.top_domain_under_public_suffix):
            return "url.domain"
        if _in(self.domains, info.fqdn):
            return "url.subdomain"
        if _in(self.urls, url):
            return "url.url"
        url_words = set(_NOT_ALNUM.split(url))
        if not self.banned_words.isdisjoint(url_words):
            return "url.banned_word"
        if len(self.soft_banned_words & url_words) >= self.soft_word_threshold:
            return "url.soft_banned_words"
        if self.has_subwords and next(self.subwords.iter(_normalise(url)), False):
            return "url.banned_subword"
        return None


@cache
def url_filter(cfg: URLFilterConfig) -> URLFilter:
    """One per process and config: building it reads 124 MB of lists (~5 s)."""
    return URLFilter(cfg)
