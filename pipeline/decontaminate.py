"""Evaluation-set decontamination: find documents that share a long word n-gram with evaluation texts.

As in GPT-3 (appendix C) and lm-eval-harness, a document is contaminated when it contains any 13-gram of
an evaluation item; words are lowercased Unicode `\\w+` runs, so case, punctuation, whitespace and line
breaks cannot hide a copy. An item shorter than `ngram` words has no n-gram: from `min_item_words` (8, the
smallest N GPT-3 used; NeMo Curator and Turing-NLG do the same) it is matched as a whole, as one run of its
own length; shorter ones are too common to tell a copy from a phrase (a bare answer, "yes", a title) and are
counted as unchecked in `stats["short_items"]`.

A batch of texts becomes one canonical byte string (lowercase words, one space between them) with
C-speed bytes methods, so a run of words is a byte span whose 64-bit polynomial hash comes from prefix sums
in a few vector operations. The evaluation runs are one sorted uint64 array, fronted by a bitmap that turns
away ~97% of absent runs in one memory read; only the rest are binary-searched. Whole items are looked for
only where a bitmap of their first `min_item_words` words says one may start. A false match needs a 64-bit
collision. Everything is in-process: nothing hashed is stored, so no hash has to be stable across versions.
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
    fields: tuple[str, ...] = ()  # JSON keys holding evaluation text; empty: every string value
    min_item_words: int = 8  # shorter items are not checked (see the module docstring)

    def __post_init__(self) -> None:
        if self.action not in ("drop", "mark"):
            raise UsageError(f"decontaminate: action must be 'drop' or 'mark', got {self.action!r}")
        if not 1 <= self.min_item_words <= self.ngram:
            raise UsageError(
                "decontaminate: need 1 <= min_item_words <= ngram, "
                f"got {self.min_item_words} and {self.ngram}"
            )


_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^j and P^-j mod 2^64 for j < n (P odd, so invertible), cached and grown by doubling."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]) if _POWERS else 1 << 16)
        p = int(_MUL)
        pw = np.multiply.accumulate(np.full(size - 1, p, dtype=np.uint64))
        inv = np.multiply.accumulate(np.full(size - 1, pow(p, -1, 1 << 64), dtype=np.uint64))
        _POWERS[:] = [np.concatenate([[np.uint64(1)], pw]), np.concatenate([[np.uint64(1)], inv])]
    return _POWERS[0], _POWERS[1]


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
        if first is None:
            n = max(len(self.begin) - k + 1, 0)
            return (self.end[k - 1 : k - 1 + n] - self.begin[:n]) * self.scale[:n], self.text[
                k : k + n
            ] == self.text[:n]
        stop = np.minimum(first + k, len(self.begin))
        hashes = (self.end[stop - 1] - self.begin[first]) * self.scale[first]
        return hashes, (first + k <= len(self.begin)) & (self.text[stop] == self.text[first])


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
        size = 2 + (data[lead] >= 0xE0) + (data[lead] >= 0xF0)
        member = _FOUR < size[:, None]
        at = lead[:, None] + _FOUR
        keys = (data[at] * member).astype(np.uint8).view(">u4").ravel()
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
    """(first index, slice) of at most _CHUNK_CHARS characters each (or one longer text)."""
    if len(texts) == 1:
        yield 0, texts
        return
    sizes = np.cumsum([len(t) for t in texts])
    at = 0
    while at < len(texts):
        base = sizes[at - 1] if at else 0
        end = max(at + 1, int(np.searchsorted(sizes, base + _CHUNK_CHARS, side="right")))
        yield at, texts[at:end]
        at = end


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _item(value: Any, fields: tuple[str, ...]) -> tuple[str, bool]:
    """An item's text (its selected strings, one per line) and whether it had any selected field."""
    if fields and isinstance(value, dict):
        picked = [value[f] for f in fields if f in value]
        return "\n".join(_strings(picked)), bool(picked)
    return "\n".join(_strings(value)), True


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
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"decontaminate: {url} line {e.lineno}: invalid JSON ({e.msg})") from None
        parsed = [_item(v, fields) for v in (value if isinstance(value, list) else [value])]
    else:
        parsed = []
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                parsed.append(_item(json.loads(line), fields))
            except json.JSONDecodeError as e:
                raise UsageError(f"decontaminate: {url} line {number}: invalid JSON ({e.msg})") from None
    if fields and parsed and not any(found for _, found in parsed):  # a typo must not check nothing
        raise UsageError(f"decontaminate: {url}: no item has any of the fields {', '.join(fields)}")
    return [t for t, _ in parsed]


class Decontaminator:
    """The runs of words of a set of evaluation files, and the check of documents against them."""

    def __init__(self, cfg: DecontamConfig, files: Sequence[str], contents: Sequence[bytes]) -> None:
        self.cfg, self.files, m = cfg, tuple(files), cfg.min_item_words
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
        all_hashes, all_owners = np.concatenate(hashes), np.concatenate(owners)
        order = np.argsort(all_hashes, kind="stable")  # owners ascend within a hash: the first file wins
        all_hashes, all_owners = all_hashes[order], all_owners[order]
        first = np.ones(len(all_hashes), dtype=bool)
        first[1:] = all_hashes[1:] != all_hashes[:-1]
        self._hashes, self._owners = all_hashes[first], all_owners[first]
        self._bitmap, self._starts = _bitmap(self._hashes), _bitmap(np.concatenate(prefixes))
        self._whole_lengths = np.array(sorted(whole_lengths), dtype=np.int64)
        self.fingerprint = digest.hexdigest()
        whole = sum(len(p) for p in prefixes)
        self.stats = {"files": len(self.files), "items": items, "ngrams": len(self._hashes)}
        self.stats |= {"whole_items": whole, "short_items": short}

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
        return int(self.check_batch([text])[0][0])

    def _find(self, runs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the valid runs found in the index, and their index slots."""
        maybe = np.flatnonzero(_maybe(self._bitmap, runs) & valid)
        maybe = maybe[np.argsort(runs[maybe])]  # sorted keys: searchsorted walks the index once, not n times
        slot = np.minimum(np.searchsorted(self._hashes, runs[maybe]), len(self._hashes) - 1)
        found = self._hashes[slot] == runs[maybe]
        return maybe[found], slot[found]

    def check_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per text: the number of matching runs (int64), and the index in `files` of the evaluation file
        of its first match (int32, -1 when clean): the drop reason can name it."""
        hits = np.zeros(len(texts), dtype=np.int64)
        owner = np.full(len(texts), -1, dtype=np.int32)
        if not len(self._hashes):
            return hits, owner
        for at, chunk in _chunks(texts):
            tokens = _tokens(chunk)
            token, slot = self._find(*tokens.runs(self.cfg.ngram))
            tokens_found, slots = [token], [slot]
            if len(self._whole_lengths):
                runs, valid = tokens.runs(self.cfg.min_item_words)
                maybe = np.flatnonzero(_maybe(self._starts, runs) & valid)
                if len(maybe):  # every whole-item length from each possible start
                    first = np.tile(maybe, len(self._whole_lengths))
                    where, slot = self._find(*tokens.runs(np.repeat(self._whole_lengths, len(maybe)), first))
                    tokens_found.append(first[where])
                    slots.append(slot)
            token, slot = np.concatenate(tokens_found), np.concatenate(slots)
            if not len(token):
                continue
            order = np.argsort(token, kind="stable")  # a text's first match is its first in text order
            text = tokens.text[token[order]]
            hits[at : at + len(chunk)] = np.bincount(text, minlength=len(chunk))
            texts_hit, first = np.unique(text, return_index=True)
            owner[at + texts_hit] = self._owners[slot[order][first]]
        return hits, owner


_LAST: list[tuple[tuple[DecontamConfig, tuple[storage.FileInfo, ...]], Decontaminator]] = []
