"""Evaluation-set decontamination: find documents that share a long word n-gram with evaluation texts.

As in GPT-3 (appendix C) and lm-eval-harness, a document is contaminated when it contains any 13-gram of
an evaluation item; words are Python's `\\w+` runs of the lowercased text, so case, punctuation, whitespace
and line breaks cannot hide a copy. An item shorter than `ngram` words has no n-gram: from `min_item_words`
(8, the smallest N GPT-3 used; NeMo Curator does the same) it is matched as a whole, as one run of its own
length; shorter items are too common to tell a copy from a phrase (a bare answer, "yes", a title) and are
counted as unchecked in `stats["short_items"]`. A JSON item's text is every string in it (ids too) unless
`fields` names its keys: name them when items are short, or an id's words keep them from matching whole.

A batch of texts becomes one canonical byte string (lowercase words, one space between them) with
C-speed bytes methods, so a run of words is a byte span whose 64-bit polynomial hash comes from prefix sums
in a few vector operations. The evaluation runs are one sorted uint64 array, fronted by a bitmap that turns
away ~97% of absent runs in one memory read; only the rest are binary-searched. Whole items are looked for
only where a bitmap of their first `min_item_words` words says one may start. A false match needs a 64-bit
collision. Hashes never leave the process (the fingerprint is a sha256 of the files' bytes), so they need
not be stable across processes or versions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.config import UsageError, to_table

VERSION = 1  # bump when what a match means changes: it is part of the fingerprint
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".txt", ".txt.gz")
_MUL = np.uint64(0x100000001B3)
_FIB = np.uint64(0x9E3779B97F4A7C15)  # spreads a hash's bits into its top bits, for the bitmap
_CHUNK_CHARS = 1_000_000  # texts hashed together: temporaries stay small and cache-friendly
# ASCII letters lowercased, other ASCII that is not \w spaced (NUL too: it separates texts); the bytes of
# other characters are kept for _canonical
_ASCII = bytes(b if b >= 0x80 or chr(b).isalnum() or b == 0x5F else 0x20 for b in range(256))
_ASCII = _ASCII.translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"))
_FOUR = np.arange(4)
_SEPARATOR = b" \x00 "  # between texts: a token of its own
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")


@dataclass(frozen=True)
class DecontamConfig:
    files: tuple[str, ...] = ()  # evaluation files, folders or globs (local or s3://)
    ngram: int = 13  # words per n-gram
    action: str = "drop"  # "drop" the document, or "mark": keep it and record the hits
    fields: tuple[str, ...] = ()  # an item's keys whose strings (nested too) are its text; empty: all
    min_item_words: int = 8  # shorter items are not checked; up to ngram, matched whole (module docstring)

    def __post_init__(self) -> None:
        if self.action not in ("drop", "mark"):
            raise UsageError(f"decontaminate: action must be 'drop' or 'mark', got {self.action!r}")
        if min(self.ngram, self.min_item_words) < 1:
            raise UsageError("decontaminate: ngram and min_item_words must be at least 1")


_POWERS = [np.ones(0, np.uint64)] * 2


def _powers(n: int) -> list[np.ndarray]:
    """P^j and P^-j mod 2^64 for j < n (P odd, so invertible), cached and grown by doubling."""
    if len(_POWERS[0]) < n:
        grid = np.full((2, max(n, 2 * len(_POWERS[0]), 1 << 16)), 0, dtype=np.uint64)
        grid[:, 1:] = [[int(_MUL)], [pow(int(_MUL), -1, 1 << 64)]]
        grid[:, 0] = 1
        _POWERS[:] = list(np.multiply.accumulate(grid, axis=1))
    return _POWERS


@dataclass(frozen=True)
class _Tokens:
    """A batch of texts as one canonical byte string: lowercase words, one space between them, a NUL token
    between texts. A run of words is then one byte span, its hash the polynomial of its bytes as if they
    began at 0, from prefix sums: equal hashes are equal canonical strings, short of a 64-bit collision."""

    begin: np.ndarray  # (tokens,) uint64 prefix sum (byte_j * P^j) before each token's first byte
    end: np.ndarray  # (tokens,) and after its last byte
    scale: np.ndarray  # (tokens,) P^-start: moves a run's polynomial to start at 0
    text: np.ndarray  # (tokens+1,) separators before each token: its text; no run may cross one

    def runs(self, k: Any, first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The hash of the k-word run from each token (slices only) or from tokens `first`, and whether it
        lies inside one text."""
        n = len(self.begin)
        if first is None:
            m = max(n - k + 1, 0)
            start, last, stop, inside = slice(0, m), slice(k - 1, k - 1 + m), slice(k, k + m), True
        else:
            stop = np.minimum(first + k, n)
            start, last, inside = first, stop - 1, first + k <= n
        hashes = (self.end[last] - self.begin[start]) * self.scale[start]
        return hashes, inside & (self.text[stop] == self.text[start])


@cache
def _canonical(key: int) -> int:
    """A character (its UTF-8 bytes as a big-endian key): lowercased if it is a word character, else spaces.
    The few letters whose lowercase has another UTF-8 length (İ, ẞ, the Kelvin sign) are kept as they are."""
    raw = key.to_bytes(4, "big").rstrip(b"\0")
    char = raw.decode()
    new = char.lower().encode() if char.isalnum() else b" " * len(raw)
    return int.from_bytes((new if len(new) == len(raw) else raw).ljust(4, b"\0"), "big")


def _tokens(texts: Sequence[str]) -> _Tokens:
    r"""Python's `\w+` words of the lowercased texts: ASCII by a translation table (C speed), the other
    characters (a few per page, a few dozen distinct) decoded in numpy and replaced per distinct one."""
    raw = _SEPARATOR.join(t.encode("utf-8", "replace").translate(_ASCII) for t in texts)
    # three spaces at the end: every word has a space after it, and a character's 4 bytes can be read
    data = np.frombuffer(raw + b"   ", dtype=np.uint8).copy()
    if not raw.isascii():  # each other character's bytes as a big-endian key, replaced by _canonical's
        lead = np.flatnonzero(data >= 0xC0)
        first = data[lead]
        member = _FOUR < (2 + (first >= 0xE0) + (first >= 0xF0))[:, None]  # the character's bytes
        at = lead[:, None] + _FOUR
        keys = (data[at] * member).view(">u4").ravel()
        distinct, inverse = np.unique(keys, return_inverse=True)
        new = np.array([_canonical(k) for k in distinct.tolist()], dtype=">u4").view(np.uint8).reshape(-1, 4)
        data[at[member]] = new[inverse][member]
    keep = data != 0x20
    keep[1:] |= keep[:-1]  # a word and the one space after it (numpy buffers the overlap)
    data = data[keep]
    gaps = np.flatnonzero(data == 0x20)  # where each word ends
    starts = np.zeros_like(gaps)
    starts[1:] = gaps[:-1] + 1
    pw, inverse = _powers(len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * pw[: len(data)], out=prefix[1:])
    text = np.zeros(len(gaps) + 1, dtype=np.int64)
    if len(texts) > 1:
        np.cumsum(data[starts] == 0, out=text[1:])
    return _Tokens(prefix[starts], prefix[gaps], inverse[starts], text)


def _bitmap(hashes: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """~32 bits per hash, set at a hash's top bits (after a multiply that spreads all its bits there)."""
    bits = min(max(len(hashes).bit_length() + 5, 20), 34)
    shift = np.uint64(64 - bits)
    at = np.unique((hashes * _FIB) >> shift)
    bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
    if len(at):
        byte, first = np.unique(at >> np.uint64(3), return_index=True)
        bitmap[byte] = np.bitwise_or.reduceat(np.left_shift(1, at & np.uint64(7)).astype(np.uint8), first)
    return bitmap, shift


def _maybe(bitmap: tuple[np.ndarray, np.uint64], runs: np.ndarray) -> np.ndarray:
    """False: the run is certainly absent; True: it may be there (~3% of absent runs)."""
    at = (runs * _FIB) >> bitmap[1]
    return (bitmap[0][at >> np.uint64(3)] >> (at & np.uint64(7))) & np.uint64(1) != 0


def _chunks(texts: Sequence[str]) -> Iterator[tuple[int, Sequence[str]]]:
    """Consecutive slices of at most _CHUNK_CHARS characters (or one longer text), with their first index."""
    at, size = 0, 0
    for i, t in enumerate(texts):
        if size and size + len(t) > _CHUNK_CHARS:
            yield at, texts[at:i]
            at, size = i, 0
        size += len(t)
    if at < len(texts):
        yield at, texts[at:]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    for v in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        yield from _strings(v)


def _item(value: Any, fields: tuple[str, ...]) -> tuple[str, bool]:
    """An item's text (its selected strings, one per line) and whether it had any selected field."""
    if fields and isinstance(value, dict):
        value = [value[f] for f in fields if f in value]
    return "\n".join(_strings(value)), bool(value) or not fields


def _json(url: str, text: str, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"decontaminate: {url} line {line + e.lineno - 1}: invalid JSON ({e.msg})") from None


def read_items(url: str, data: bytes, fields: tuple[str, ...] = ()) -> list[str]:
    """The evaluation items of one file's bytes: a JSON object per .jsonl line, each element of a .json list
    (or the one object), each blank-line-separated paragraph of a .txt; `.gz` of any of them."""
    name = url.removesuffix(".gz")
    kind = next((s for s in (".jsonl", ".json", ".txt") if name.endswith(s)), None)
    if kind is None:
        raise UsageError(f"decontaminate: {url}: unknown file type; expected one of {', '.join(SUFFIXES)}")
    if url.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise UsageError(f"decontaminate: {url}: not a gzip file ({e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"decontaminate: {url} line {line}: not UTF-8 text") from None
    if kind == ".txt":
        return [p for p in _PARAGRAPH.split(text) if p.strip()]
    if kind == ".json":
        value = _json(url, text, 1)
        rows = value if isinstance(value, list) else [value]
    else:
        rows = [_json(url, line, n) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    parsed = [_item(row, fields) for row in rows]
    if fields and parsed and not any(found for _, found in parsed):  # a typo must not check nothing
        raise UsageError(f"decontaminate: {url}: no item has any of the fields {', '.join(fields)}")
    return [t for t, _ in parsed]


class Decontaminator:
    """The runs of words of a set of evaluation files, and the check of documents against them."""

    def __init__(self, cfg: DecontamConfig, files: Sequence[str], contents: Sequence[bytes]) -> None:
        self.cfg, self.files = cfg, tuple(files)
        self._m = m = min(cfg.min_item_words, cfg.ngram)  # whole items have at least m words
        digest = hashlib.sha256(json.dumps([VERSION, to_table(cfg)], sort_keys=True).encode())
        hashes, owners, prefixes = [np.zeros(0, np.uint64)], [np.zeros(0, np.int32)], [np.zeros(0, np.uint64)]
        whole_lengths, items, short = set(), 0, 0
        for index, (url, data) in enumerate(zip(self.files, contents, strict=True)):
            digest.update(f"\n{url}\n{hashlib.sha256(data).hexdigest()}".encode())
            texts = read_items(url, data, cfg.fields)
            items += len(texts)
            for _, chunk in _chunks(texts):
                tokens = _tokens(chunk)
                counts = np.bincount(tokens.text[:-1][np.diff(tokens.text) == 0], minlength=len(chunk))
                short += int((counts < m).sum())
                # an item's n-grams, or its one whole run when it is shorter than n
                length = np.where(counts >= m, np.minimum(counts, cfg.ngram), 0)[tokens.text[:-1]]
                for k in np.unique(length[length > 0]).tolist():
                    runs, valid = tokens.runs(k)
                    start = np.flatnonzero(valid & (length[: len(runs)] == k))
                    hashes.append(runs[start])
                    owners.append(np.full(len(start), index, dtype=np.int32))
                    if k < cfg.ngram:  # where a document's run may be a whole item: its first m words
                        whole_lengths.add(k)
                        prefixes.append(tokens.runs(m, start)[0])
        # sorted distinct runs; a run's first occurrence is in the first file that has it
        self._hashes, first = np.unique(np.concatenate(hashes), return_index=True)
        self._owners = np.concatenate(owners)[first]
        self._bitmap, self._starts = _bitmap(self._hashes), _bitmap(np.concatenate(prefixes))
        self._whole_lengths = np.array(sorted(whole_lengths), dtype=np.int64)
        self.fingerprint = digest.hexdigest()
        whole = sum(len(p) for p in prefixes)
        self.stats = {"files": len(files), "items": items, "ngrams": len(self._hashes)}
        self.stats |= {"whole_items": whole, "short_items": short}  # short: not checked

    @classmethod
    def from_config(cls, cfg: DecontamConfig) -> Decontaminator:
        """Read and index the configured files; the last index is reused while the files are unchanged (a
        Ray worker runs many filter tasks), so a task may call this freely."""
        found = []
        for item in cfg.files:
            try:
                listed = storage.list_inputs(item, SUFFIXES)
            except FileNotFoundError:
                raise UsageError(f"decontaminate: no such evaluation file: {item}") from None
            if not listed:
                raise UsageError(f"decontaminate: no {', '.join(SUFFIXES)} files in {item}")
            found += listed
        key = (cfg, tuple(found))
        if _LAST and _LAST[0][0] == key:
            return _LAST[0][1]
        urls = [f.url for f in found]
        built = cls(cfg, urls, [storage.read_bytes(u) for u in urls])
        _LAST[:] = [(key, built)]
        return built

    def check(self, text: str) -> int:
        """How many of the document's n-grams (and whole short items) are in the evaluation set; 0: clean."""
        return self.match(text)[0]

    def match(self, text: str) -> tuple[int, str | None]:
        """check()'s count, and the evaluation file of the document's first match (None when clean)."""
        token, slot = self._matches(_tokens([text])) if len(self._hashes) else ([], [])
        return len(token), self.files[self._owners[slot[np.argmin(token)]]] if len(token) else None

    def check_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per text: the number of matches (int64), and the index in `files` of the evaluation file of its
        first match (int32, -1 when clean)."""
        hits = np.zeros(len(texts), dtype=np.int64)
        owner = np.full(len(texts), -1, dtype=np.int32)
        for at, chunk in _chunks(texts) if len(self._hashes) else ():
            tokens = _tokens(chunk)
            token, slot = self._matches(tokens)
            order = np.argsort(token, kind="stable")  # a text's first match is its first in text order
            text = tokens.text[token[order]]
            hits[at : at + len(chunk)] = np.bincount(text, minlength=len(chunk))
            texts_hit, first = np.unique(text, return_index=True)
            owner[at + texts_hit] = self._owners[slot[order][first]]
        return hits, owner

    def _matches(self, tokens: _Tokens) -> tuple[np.ndarray, np.ndarray]:
        """The first token of every matching run, and its slot in the index."""
        token, slot = self._find(*tokens.runs(self.cfg.ngram))
        if not len(self._whole_lengths):
            return token, slot
        runs, valid = tokens.runs(self._m)
        maybe = np.flatnonzero(_maybe(self._starts, runs) & valid)
        if not len(maybe):
            return token, slot
        first = np.tile(maybe, len(self._whole_lengths))  # every whole-item length from each possible start
        where, whole = self._find(*tokens.runs(np.repeat(self._whole_lengths, len(maybe)), first))
        return np.concatenate([token, first[where]]), np.concatenate([slot, whole])

    def _find(self, runs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the valid runs found in the index, and their slots in it."""
        maybe = np.flatnonzero(_maybe(self._bitmap, runs) & valid)
        order = np.argsort(runs[maybe])  # sorted keys: searchsorted walks the index once, not once each
        maybe, keys = maybe[order], runs[maybe[order]]
        slot = np.minimum(np.searchsorted(self._hashes, keys), len(self._hashes) - 1)
        found = self._hashes[slot] == keys
        return maybe[found], slot[found]


_LAST: list[tuple[tuple[DecontamConfig, tuple[storage.FileInfo, ...]], Decontaminator]] = []
