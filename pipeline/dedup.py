"""What near-duplicate detection computes per document and per pair, vectorised over batches.

A document's shingles are its word 5-grams (lowercased `\\w+` words; a text of fewer words is one shingle),
the measure the labelled near-duplicate set uses. Each shingle is hashed once to 64 bits, and the sketch is
a one-permutation MinHash: the shingle hashes fall into `bins` bins by their top bits and each bin keeps its
minimum, so a sketch costs one pass over the shingles however many bins it has (a classic MinHash with k
permutations costs k passes). Empty bins borrow from the next filled bin (rotation densification), so two
sketches agree in a bin with probability equal to the Jaccard of the shingle sets.

From the sketch:
- `bands` LSH band keys over the full 64-bit bin minima: documents sharing a band key become candidates;
- one byte per bin (b-bit MinHash): enough to estimate the Jaccard of a candidate pair to about +-0.009 at
  0.8 with 2,048 bins, in 2 KB per document: candidates are verified against the threshold with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import UsageError

# word bytes: ASCII letters, digits, underscore, and every byte of a non-ASCII character
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*b"0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]] = True
_WORD_BYTE[0x80:] = True
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[*b" \t\n\r\x0b\x0c"]] = True
# non-ASCII characters that separate words: (lead byte, second bytes, UTF-8 length)
_NON_WORDS = (
    (0xC2, np.array([0xA0, 0xA1, 0xAB, 0xB7, 0xBB, 0xBF]), 2),  # no-break space, ¡ « · » ¿
    (0xE2, np.array([0x80, 0x81]), 3),  # U+2000-U+207F: spaces, dashes, quotes, bullets, ellipsis
    (0xE3, np.array([0x80]), 3),  # U+3000-U+303F: ideographic space, comma, full stop, brackets
)
_EMPTY = np.iinfo(np.uint64).max
_SHINGLE_MUL = np.uint64(0x100000001B3)


@dataclass(frozen=True)
class DedupConfig:
    """Defaults measured on the labelled near-duplicate set (bench/dedup_quality.py)."""

    threshold: float = 0.8  # estimated Jaccard of the word n-gram sets at which two documents are duplicates
    ngram: int = 5  # words per shingle
    bins: int = 2048  # MinHash bins per sketch; one byte each is kept to verify candidates (2 KB a document)
    bands: int = 16  # LSH bands; a pair at Jaccard J becomes a candidate with probability 1-(1-J^rows)^bands:
    rows: int = 6  # 0.992 at J=0.8, 0.87 at J=0.7, 0.22 at J=0.5; candidates are then verified
    seed: int = 1
    partitions: int = 0  # files the band buckets and edges are spread over; 0: from the corpus size

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.bins:
            raise UsageError(f"dedup: bands x rows ({self.bands}x{self.rows}) exceeds bins ({self.bins})")
        if not 0 < self.threshold <= 1:
            raise UsageError(f"dedup: threshold must be in (0, 1], got {self.threshold}")
        if min(self.ngram, self.bins, self.bands, self.rows) < 1 or self.partitions < 0:
            raise UsageError("dedup: ngram, bins, bands and rows must be at least 1, partitions at least 0")


@dataclass(frozen=True)
class Sketches:
    """A batch's sketches: `bytes_` (n, bins) uint8 for verification, `bands` (n, bands) uint64 keys, and
    `has_words` (n,) bool: a document without words has no sketch to compare (exact dedup still applies)."""

    bytes_: np.ndarray
    bands: np.ndarray
    has_words: np.ndarray
    exact: np.ndarray  # (n,) uint64 exact-text keys


def _buffer(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and each string's (n+1,) offsets into them."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1].astype(
        np.int64
    )
    buffer = arr.buffers()[2]
    if not len(arr) or buffer is None:
        return np.zeros(0, np.uint8), np.zeros(len(arr) + 1, np.int64)
    return np.frombuffer(buffer, dtype=np.uint8)[offsets[0] : offsets[-1]], offsets - offsets[0]


def _prefix(data: np.ndarray) -> np.ndarray:
    """Prefix sums of a polynomial over the bytes (mod 2^64): any span's hash in two lookups."""
    powers, _ = _powers(len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers[: len(data)], out=prefix[1:])
    return prefix


def _hash_spans(prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash of each span [start, end) of the bytes behind `prefix`: its polynomial as if it began
    at 0, its length and the seed, mixed."""
    _, inverse = _powers(len(prefix))
    h = (prefix[ends] - prefix[starts]) * inverse[starts]
    lengths = (ends - starts).astype(np.uint64)
    return mix64(h ^ mix64(lengths + np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64))))


def hash_strings(strings: Sequence[str] | pa.Array, seed: int = 1) -> np.ndarray:
    """A 64-bit hash of each string (of its UTF-8 bytes), vectorised over the Arrow buffer."""
    data, offsets = _buffer(_strings(strings))
    return _hash_spans(_prefix(data), offsets[:-1], offsets[1:], seed)


def exact_key(text: str) -> int:
    """The key of a text with case and ASCII whitespace ignored: equal keys are exact duplicates."""
    return int(shingle_hashes([text], 1)[2][0])


_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^j and P^-j mod 2^64 for j < n (P odd, so invertible), cached and grown by doubling."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]) if _POWERS else 1 << 16)
        p = int(_SHINGLE_MUL)
        pw = np.multiply.accumulate(np.full(size, p, dtype=np.uint64))
        inv = np.multiply.accumulate(np.full(size, pow(p, -1, 1 << 64), dtype=np.uint64))
        _POWERS[:] = [np.concatenate([[np.uint64(1)], pw[:-1]]), np.concatenate([[np.uint64(1)], inv[:-1]])]
    return _POWERS[0], _POWERS[1]


def _strings(texts: Sequence[str] | pa.Array) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    return texts.fill_null("")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (uint64 in, uint64 out)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Word (start, end) byte spans of UTF-8 text, and the number of words of each text.

    A word is a run of ASCII letters, digits and underscores or of non-ASCII characters, cut at the common
    non-ASCII spaces and punctuation (no-break space, guillemets, U+2000-U+206F, CJK comma and full stop):
    Python's `\w+` on the texts this pipeline sees, at numpy speed, without a regex engine.
    """
    word = _WORD_BYTE[data]
    for lead, seconds, length in _NON_WORDS:
        at = np.flatnonzero(data[: len(data) - length + 1] == lead)
        at = at[np.isin(data[at + 1], seconds)]
        for k in range(length):
            word[at + k] = False
    boundary = np.zeros(len(data) + 1, dtype=bool)
    boundary[offsets] = True  # no word runs from one text into the next
    starts = np.flatnonzero(word & (boundary[:-1] | ~np.concatenate([[False], word[:-1]])))
    ends = np.flatnonzero(word & (boundary[1:] | ~np.concatenate([word[1:], [False]]))) + 1
    counts = np.diff(np.searchsorted(starts, offsets))
    return starts, ends, counts


def shingle_hashes(
    texts: Sequence[str] | pa.Array, ngram: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every document's word n-grams, concatenated; each document's start offset in them (n+1,);
    and each document's exact key (its text without case and ASCII whitespace).

    One pass over the batch's lowercased UTF-8 buffer: the whitespace is dropped, one prefix sum hashes
    every word and every whole text, and n-grams combine their words' hashes.
    """
    data, offsets = _buffer(pc.utf8_lower(_strings(texts)))
    starts, ends, counts = word_spans(data, offsets)
    kept = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(~_WHITESPACE[data], out=kept[1:])  # words hold no whitespace: their spans map across
    prefix = _prefix(data[~_WHITESPACE[data]])
    h = _hash_spans(prefix, kept[starts], kept[ends], seed)
    exact = _hash_spans(prefix, kept[offsets[:-1]], kept[offsets[1:]], seed)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    if len(h) >= ngram:  # all n-grams of the concatenation; those crossing a document boundary are dropped
        span = len(h) - ngram + 1
        acc = h[:span].copy()
        for j in range(1, ngram):
            acc = acc * _SHINGLE_MUL ^ h[j : span + j]  # position-sensitive: "a b" != "b a"
        ends = np.repeat(np.cumsum(counts), counts)[:span]  # the end of the document each word is in
        acc = acc[np.arange(span) + ngram <= ends]
    else:
        acc = np.zeros(0, dtype=np.uint64)
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):  # fewer words than n: the whole text is one shingle
        starts = np.concatenate([[0], np.cumsum(counts)])
        pieces, at = [], 0
        long_ends = np.cumsum(np.where(counts >= ngram, counts - ngram + 1, 0))
        for d in short:
            one = h[starts[d] : starts[d] + 1]  # arrays, not scalars: uint64 wrap-around is intended
            for k in range(starts[d] + 1, starts[d + 1]):
                one = one * _SHINGLE_MUL ^ h[k : k + 1]
            pieces += [acc[at : long_ends[d]], one]
            at = long_ends[d]
        acc = np.concatenate([*pieces, acc[at:]])
    return mix64(acc), np.concatenate([[0], np.cumsum(per_doc)]), exact


def sketch(texts: Sequence[str] | pa.Array, cfg: DedupConfig) -> Sketches:
    """One-permutation MinHash sketches of a batch of texts (see the module docstring), and exact keys."""
    n, bins = len(texts), cfg.bins
    values, starts, exact = shingle_hashes(texts, cfg.ngram, cfg.seed)
    doc = np.repeat(np.arange(n), np.diff(starts))
    cell = doc * bins + ((values >> np.uint64(32)) * np.uint64(bins) >> np.uint64(32)).astype(np.int64)
    minima = np.full(n * bins, _EMPTY, dtype=np.uint64)
    np.minimum.at(minima, cell, values)
    minima = minima.reshape(n, bins)
    has_words = np.diff(starts) > 0
    _densify(minima)
    bands = band_keys(minima, cfg)
    return Sketches(minima.astype(np.uint8), bands, has_words, exact)


def _densify(minima: np.ndarray) -> None:
    """Fill each empty bin with the next filled bin to its right (circularly), in place."""
    empty = minima == _EMPTY
    if not empty.any():
        return
    bins = minima.shape[1]
    idx = np.where(empty, 2 * bins, np.arange(bins))  # filled bins point at themselves
    twice = np.concatenate([idx, idx + bins * (idx < 2 * bins)], axis=1)  # the row twice: wrap around
    nxt = np.minimum.accumulate(twice[:, ::-1], axis=1)[:, ::-1][:, :bins]  # next filled at or after i
    rows = np.flatnonzero(~empty.all(axis=1))
    src = nxt[rows] % bins
    minima[rows] = np.take_along_axis(minima[rows], src, axis=1)


def band_keys(minima: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """(n, bands) uint64: band b hashes bins [b*rows, (b+1)*rows) with b, so bands never collide."""
    n = minima.shape[0]
    blocks = minima[:, : cfg.bands * cfg.rows].reshape(n, cfg.bands, cfg.rows)
    acc = np.broadcast_to(np.arange(1, cfg.bands + 1, dtype=np.uint64), (n, cfg.bands)).copy()
    for r in range(cfg.rows):
        acc = mix64(acc * _SHINGLE_MUL ^ blocks[:, :, r])
    return acc


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard estimated from b-bit (one byte per bin) sketches, row by row: (m, bins) x (m, bins) -> (m,).

    Two bins agree by chance with probability 1/256 when their minima differ; this removes that share.
    """
    agree = (np.asarray(a) == np.asarray(b)).mean(axis=-1)
    return np.clip((agree - 1 / 256) / (1 - 1 / 256), 0.0, 1.0)
