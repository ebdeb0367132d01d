"""Records handed from one wave of tasks to the next, partitioned on disk: the shuffle of dedup and tokenize.

A task of one wave writes one file holding its records split into P sections; task p of the next wave
reads section p of every file. A file is a small header (magic, dtype, P+1 section offsets) followed by the
sections back to back: fixed-width numpy structured records (dedup), or opaque bytes (tokenize's
serialized Arrow batches). A reader fetches its section, or a run of consecutive sections, with at most
three ranged reads per file (header start, its offsets, the sections) whatever the number of partitions.
Nothing holds more than one section of one wave.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

from pipeline import storage

MAGIC = b"TMX1"
_PREFIX = struct.Struct("<4sII")  # magic, partitions, length of the dtype's JSON
_CHUNK = 512  # files whose headers are in memory at once
_HEADER_GUESS = 1 << 13  # one read gets the offsets of files with up to ~1,000 partitions


def write_sections(url: str, records: np.ndarray, partition: np.ndarray, partitions: int) -> None:
    """Write `records` grouped by `partition` (one int per record, in [0, partitions))."""
    order = np.argsort(partition, kind="stable")
    counts = np.bincount(partition, minlength=partitions) if len(partition) else np.zeros(partitions, int)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype("<u8") * records.dtype.itemsize
    _write(url, records.dtype, offsets, [np.ascontiguousarray(records[order]).data])


def write_byte_sections(url: str, sections: Sequence[bytes | memoryview]) -> None:
    """Write variable-length sections (e.g. serialized Arrow batches); read_sections returns them as uint8."""
    sizes = np.fromiter((len(memoryview(s).cast("B")) for s in sections), dtype="<u8", count=len(sections))
    _write(url, np.dtype(np.uint8), np.concatenate([[0], np.cumsum(sizes)]).astype("<u8"), sections)


def _write(url: str, dtype: np.dtype, offsets: np.ndarray, payload: Sequence[bytes | memoryview]) -> None:
    descr = json.dumps(dtype.descr).encode()
    header = _PREFIX.pack(MAGIC, len(offsets) - 1, len(descr)) + descr
    base = len(header) + offsets.nbytes
    with storage.atomic_write(url) as f:
        f.write(header)
        f.write((offsets + base).astype("<u8").tobytes())
        for piece in payload:
            f.write(piece)


def _dtype(descr: list) -> np.dtype:
    return np.dtype(
        [tuple(field) if len(field) == 2 else (field[0], field[1], tuple(field[2])) for field in descr]
    )


def _header(head: bytes, url: str) -> tuple[int, int, np.dtype | None]:
    """(partitions, where the offsets start, dtype: None if its description is longer than `head`)."""
    magic, partitions, n = _PREFIX.unpack_from(head)
    if magic != MAGIC:
        raise ValueError(f"{url} is not a partitioned record file")
    if len(head) < _PREFIX.size + n:
        return partitions, _PREFIX.size + n, None
    return partitions, _PREFIX.size + n, _dtype(json.loads(head[_PREFIX.size : _PREFIX.size + n]))


def read_sections(urls: Sequence[str], p: int) -> list[np.ndarray]:
    """Section p of each file, one array per file."""
    return [np.frombuffer(blob, dtype=dtype) for blob, _, dtype in read_spans(urls, p, p + 1)]


def read_spans(urls: Sequence[str], first: int, stop: int) -> list[tuple[bytes, np.ndarray, np.dtype]]:
    """Sections first..stop-1 of each file, which lie back to back: (their bytes, the stop - first + 1
    offsets of the sections within them, the dtype) per file.

    Remote files are read concurrently (fsspec cat_ranges), a chunk of files at a time, in at most three
    requests per file whatever the number of partitions: the start of the header, the offsets wanted when
    they lie past it, the sections.
    """
    out: list[tuple[bytes, np.ndarray, np.dtype]] = []
    for at in range(0, len(urls), _CHUNK):
        out += _read_chunk(urls[at : at + _CHUNK], first, stop)
    return out


def _read_chunk(urls: Sequence[str], first: int, stop: int) -> list[tuple[bytes, np.ndarray, np.dtype]]:
    if not urls:
        return []
    fs, _ = storage.filesystem(urls[0])
    paths = [storage.filesystem(u)[1] for u in urls]
    heads = list(fs.cat_ranges(paths, [0] * len(paths), [_HEADER_GUESS] * len(paths)))
    headers = [_header(h, u) for h, u in zip(heads, urls, strict=True)]
    for (partitions, _, _), url in zip(headers, urls, strict=True):
        if not 0 <= first < stop <= partitions:
            raise ValueError(f"{url} has {partitions} partitions, asked for {first}..{stop - 1}")
    long = [i for i, (_, _, dtype) in enumerate(headers) if dtype is None]  # a dtype described at length
    if long:
        more = fs.cat_ranges([paths[i] for i in long], [0] * len(long), [headers[i][1] for i in long])
        for i, head in zip(long, more, strict=True):
            heads[i], headers[i] = head, _header(head, urls[i])
    # offsets first..stop of each file, 8 bytes each from where its offsets start: only those are read
    spans = [(base + 8 * first, base + 8 * (stop + 1)) for _, base, _ in headers]
    raw = [heads[i][a:b] for i, (a, b) in enumerate(spans)]
    far = [i for i, (_, b) in enumerate(spans) if b > len(heads[i])]
    if far:
        got = fs.cat_ranges([paths[i] for i in far], [spans[i][0] for i in far], [spans[i][1] for i in far])
        for i, blob in zip(far, got, strict=True):
            raw[i] = blob
    offsets = [np.frombuffer(r, dtype="<u8").astype(np.int64) for r in raw]
    wanted = [i for i, o in enumerate(offsets) if o[-1] > o[0]]  # an empty range is no valid request
    blobs = [b""] * len(paths)
    got = fs.cat_ranges(
        [paths[i] for i in wanted],
        [int(offsets[i][0]) for i in wanted],
        [int(offsets[i][-1]) for i in wanted],
    )
    for i, blob in zip(wanted, got, strict=True):
        blobs[i] = blob
    return [(blob, o - o[0], h[2]) for blob, o, h in zip(blobs, offsets, headers, strict=True)]


def read_section(urls: Sequence[str], p: int, dtype: np.dtype | None = None) -> np.ndarray:
    """Section p of every file, concatenated. Byte-string fields may differ in width between files (each
    writer sizes them to its longest value); they are widened to the widest."""
    parts = read_sections(urls, p)
    if dtype is None:
        if not parts:
            raise ValueError("read_section needs a dtype when there are no files")
        dtype = _widest([a.dtype for a in parts])
    return np.concatenate([a.astype(dtype) for a in parts]) if parts else np.zeros(0, dtype)


def _widest(dtypes: list[np.dtype]) -> np.dtype:
    fields = []
    for name in dtypes[0].names:
        kinds = [d.fields[name][0] for d in dtypes]
        fields.append((name, max(kinds, key=lambda k: k.itemsize) if kinds[0].kind == "S" else kinds[0]))
    return np.dtype(fields)


def read_rows(url: str, rows: np.ndarray, width: int) -> np.ndarray:
    """Rows `rows` (sorted or not) of a file of uint8 rows `width` bytes wide (a dedup sketch file, written
    row after row with no header), as (len, width).

    Local files are memory-mapped; remote ones are fetched as one ranged read per run of nearby rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if storage.is_local(url):
        _, path = storage.filesystem(url)
        return np.array(np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, width)[rows])
    fs, path = storage.filesystem(url)
    order = np.argsort(rows)
    wanted = rows[order]
    # coalesce rows closer than 64 KB into one read
    breaks = np.flatnonzero(np.diff(wanted) * width > (1 << 16)) + 1
    runs = np.split(wanted, breaks)
    starts = [int(r[0]) * width for r in runs]
    ends = [(int(r[-1]) + 1) * width for r in runs]
    blobs = fs.cat_ranges([path] * len(runs), starts, ends)
    out = np.empty((len(rows), width), dtype=np.uint8)
    at = 0
    for run, start, blob in zip(runs, starts, blobs, strict=True):
        block = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
        out[order[at : at + len(run)]] = block[(run * width - start) // width]
        at += len(run)
    return out
