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

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import UsageError

# RE2 (pyarrow) spelling of Python's `\W+` on str: letters, digits and underscore make words
_SEPARATORS = r"[^\pL\pN_]+"
_WS_RE = re.compile(r"\s+")
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


def exact_key(text: str) -> int:
    """64-bit hash of the text with whitespace collapsed and case folded: equal keys are exact duplicates."""
    normalised = _WS_RE.sub(" ", text).strip().casefold()
    return int.from_bytes(hashlib.blake2b(normalised.encode("utf-8"), digest_size=8).digest(), "little")


def id_key(doc_id: str) -> int:
    """64-bit hash of a document id: the same record given twice shares it."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (uint64 in, uint64 out)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingle_hashes(
    texts: Sequence[str] | pa.Array, ngram: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every document's word n-grams, concatenated, and each document's start offset (n+1,).

    Words are split and lowercased in Arrow (C++) for the whole batch; each distinct word of the batch is
    hashed once (blake2b), and n-grams combine their words' hashes in numpy.
    """
    if not isinstance(texts, pa.Array | pa.ChunkedArray):
        texts = pa.array(texts, pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    words = pc.split_pattern_regex(pc.utf8_lower(texts), _SEPARATORS)
    flat = pc.list_flatten(words)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    offsets = words.offsets.to_numpy()
    kept = np.concatenate([[0], np.cumsum(nonempty.to_numpy(zero_copy_only=False), dtype=np.int64)])
    counts = kept[offsets[1:]] - kept[offsets[:-1]]
    encoded = pc.dictionary_encode(flat.filter(nonempty))
    salt = seed.to_bytes(8, "little")
    digests = b"".join(
        hashlib.blake2b(w.encode("utf-8"), digest_size=8, salt=salt).digest()
        for w in encoded.dictionary.to_pylist()
    )
    h = np.frombuffer(digests, dtype="<u8").astype(np.uint64)[encoded.indices.to_numpy()]

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
    return mix64(acc), np.concatenate([[0], np.cumsum(per_doc)])


def sketch(texts: Sequence[str] | pa.Array, cfg: DedupConfig) -> Sketches:
    """One-permutation MinHash sketches of a batch of texts (see the module docstring)."""
    n, bins = len(texts), cfg.bins
    values, starts = shingle_hashes(texts, cfg.ngram, cfg.seed)
    doc = np.repeat(np.arange(n), np.diff(starts))
    cell = doc * bins + ((values >> np.uint64(32)) * np.uint64(bins) >> np.uint64(32)).astype(np.int64)
    minima = np.full(n * bins, _EMPTY, dtype=np.uint64)
    np.minimum.at(minima, cell, values)
    minima = minima.reshape(n, bins)
    has_words = np.diff(starts) > 0
    _densify(minima)
    bands = band_keys(minima, cfg)
    return Sketches(minima.astype(np.uint8), bands, has_words)


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
