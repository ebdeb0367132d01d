"""What near-duplicate detection computes per document and per pair, vectorised over batches.

A document's shingles are its word 5-grams (lowercased `\\w+` words; a text of fewer words is one shingle),
the measure the labelled near-duplicate set uses. Each shingle is hashed once to 64 bits, and the sketch is
a one-permutation MinHash: the shingle hashes fall into `bins` bins by their top bits and each bin keeps its
minimum, so a sketch costs one pass over the shingles however many bins it has (a classic MinHash with k
permutations costs k passes).

From the sketch:
- `bands` LSH band keys over the full 64-bit minima of the first bins (an empty bin borrows from the next
  filled one, so a short text has bands too): documents sharing a band key become candidates;
- one byte per bin (b-bit MinHash, 0 for empty): enough to estimate the Jaccard of a candidate pair to
  about +-0.007 at 0.8 with 2,048 bins, in 2 KB per document: candidates are verified with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import UsageError

_ASCII_WORD = np.zeros(256, dtype=bool)  # ASCII letters, digits and underscore; non-ASCII looked up below
_ASCII_WORD[[*b"0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]] = True
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[*b" \t\n\r\x0b\x0c"]] = True
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
    # a drop whose estimate is this close above the threshold is checked on the two exact shingle sets,
    # where a sketch cannot tell 0.79 from 0.81 (0: trust the sketch)
    exact_margin: float = 0.03

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.bins:
            raise UsageError(f"dedup: bands x rows ({self.bands}x{self.rows}) exceeds bins ({self.bins})")
        if not 0 < self.threshold <= 1:
            raise UsageError(f"dedup: threshold must be in (0, 1], got {self.threshold}")
        if (
            min(self.ngram, self.bins, self.bands, self.rows) < 1
            or min(self.partitions, self.exact_margin) < 0
        ):
            raise UsageError(
                "dedup: ngram, bins, bands and rows must be at least 1; partitions, exact_margin at least 0"
            )


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


@cache
def _word_code_points() -> np.ndarray:
    r"""Python's `\w` for every code point (str.isalnum() or "_"), built once per process (~0.3 s)."""
    table = np.fromiter((chr(c).isalnum() for c in range(0x110000)), dtype=bool, count=0x110000)
    table[ord("_")] = True
    return table


def _word_bytes(data: np.ndarray) -> np.ndarray:
    r"""Whether each byte of UTF-8 text belongs to a `\w` character: ASCII by a table, every other
    character decoded from its lead byte (only those are visited) and looked up."""
    word = _ASCII_WORD[data]
    lead = np.flatnonzero(data >= 0xC0)
    if not len(lead):
        return word
    last = len(data) - 1
    b0 = data[lead].astype(np.int64)
    cont = [data[np.minimum(lead + k, last)].astype(np.int64) & 0x3F for k in (1, 2, 3)]
    length = np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4))
    point = np.where(
        length == 2,
        (b0 & 0x1F) << 6 | cont[0],
        np.where(
            length == 3,
            (b0 & 0x0F) << 12 | cont[0] << 6 | cont[1],
            (b0 & 0x07) << 18 | cont[0] << 12 | cont[1] << 6 | cont[2],
        ),
    )
    is_word = _word_code_points()[np.minimum(point, 0x10FFFF)]
    for k in range(4):
        at = lead[is_word & (k < length)] + k
        word[at] = True
    return word


def word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Word (start, end) byte spans of UTF-8 text, and the number of words of each text.

    The words of Python's `\w+` (letters, digits and underscore of any script), found at numpy speed in the
    batch's one buffer, without a regex engine.
    """
    word = _word_bytes(data)
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
    # a byte per bin: 0 for an empty bin, else 1-255 from the minimum's bits below the bin's own
    kept = (np.uint64(1) + (minima >> np.uint64(8)) % np.uint64(255)).astype(np.uint8)
    kept[minima == _EMPTY] = 0
    bands = band_keys(_densified(minima, cfg.bands * cfg.rows), cfg)
    return Sketches(kept, bands, np.diff(starts) > 0, exact)


def _densified(minima: np.ndarray, width: int) -> np.ndarray:
    """The first `width` bins, each empty one filled from the next filled bin to its right (circularly):
    bands then compare as many values for a short text as for a long one. Looks a window ahead first;
    only a text with a longer run of empty bins pays for its whole row."""
    bins = minima.shape[1]
    window = minima[:, : min(bins, width + 64)]
    out = np.empty((len(minima), width), dtype=np.uint64)
    nxt = _next_filled(window == _EMPTY)[:, :width]
    found = nxt < window.shape[1]
    rows = found.all(axis=1)
    out[rows] = np.take_along_axis(window[rows], nxt[rows], axis=1)
    for r in np.flatnonzero(~rows):  # few: texts with fewer words than bins / 64 or so
        row = minima[r]
        if (row == _EMPTY).all():
            out[r] = _EMPTY
            continue
        twice = np.concatenate([row, row])
        out[r] = twice[_next_filled(twice[None, :] == _EMPTY)[0, :width]]
    return out


def _next_filled(empty: np.ndarray) -> np.ndarray:
    """For each position, the index of the next non-empty one at or after it (the row length if none)."""
    width = empty.shape[1]
    idx = np.where(empty, width, np.arange(width))
    return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]


def band_keys(minima: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """(n, bands) uint64: band b hashes bins [b*rows, (b+1)*rows) with b, so bands never collide."""
    n = minima.shape[0]
    blocks = minima[:, : cfg.bands * cfg.rows].reshape(n, cfg.bands, cfg.rows)
    acc = np.broadcast_to(np.arange(1, cfg.bands + 1, dtype=np.uint64), (n, cfg.bands)).copy()
    for r in range(cfg.rows):
        acc = mix64(acc * _SHINGLE_MUL ^ blocks[:, :, r])
    return acc


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard of two texts' shingle sets from their sketches, row by row: (m, bins) x (m, bins) -> (m,).

    Bins empty in both say nothing and are left out (one-permutation hashing's own estimator, Li, Owen
    and Zhang 2012): with bins to spare the rest hold about one shingle each, so the share of equal ones
    is close to the true Jaccard (error ~0.007 near 0.8 with 2,048 bins). Two filled bins whose minima
    differ still agree with probability 1/255 (a byte each); that share is taken out. Two texts without
    shingles are equal.
    """
    a, b = np.asarray(a), np.asarray(b)
    filled = (a != 0) | (b != 0)
    n = filled.sum(axis=-1)
    both = ((a != 0) & (b != 0)).sum(axis=-1)
    agree = ((a == b) & (a != 0)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = (agree - both / 255) / (n * (1 - 1 / 255))
    return np.clip(np.where(n > 0, est, 1.0), 0.0, 1.0)


def pair_estimates(sketches: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of the sketches of rows i and j, pair by pair, a block of pairs at a time: the
    comparison's temporaries stay a few MB however many pairs a task verifies."""
    out = np.zeros(len(i), dtype=np.float32)
    for at in range(0, len(i), _BLOCK):
        rows = slice(at, at + _BLOCK)
        out[rows] = estimated_jaccard(sketches[i[rows]], sketches[j[rows]])
    return out


def agree(sketches: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float) -> np.ndarray:
    """Whether the sketches of rows i and j agree at the threshold, pair by pair."""
    return pair_estimates(sketches, i, j) >= threshold


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sets of shingle hashes (unique, any order)."""
    both = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - both
    return both / union if union else 1.0


_BLOCK = 2048
