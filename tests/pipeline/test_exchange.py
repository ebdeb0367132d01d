"""Partitioned record files: what one wave of dedup tasks hands the next, locally and on S3."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import exchange, storage

RECORD = np.dtype([("key", "<u8"), ("row", "<u4"), ("kind", "u1")])


def records(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=RECORD)
    out["key"] = rng.integers(0, 2**63, n, dtype=np.uint64)
    out["row"] = np.arange(n)
    out["kind"] = rng.integers(0, 3, n)
    return out


def roundtrip(root: str) -> None:
    files, written = [], []
    for w in range(3):  # three writers, five partitions, one of them empty everywhere
        recs = records(100 + w, seed=w)
        part = (recs["key"] % np.uint64(4)).astype(np.int64)
        url = f"{root}/w{w}.bin"
        exchange.write_sections(url, recs, part, 5)
        files.append(url)
        written.append((recs, part))
    for p in range(5):
        got = exchange.read_sections(files, p)
        for (recs, part), section in zip(written, got, strict=True):
            assert section.dtype == RECORD
            assert np.array_equal(np.sort(section, order="row"), recs[part == p])  # each writer's order kept
        assert len(exchange.read_section(files, p, RECORD)) == sum(int((pt == p).sum()) for _, pt in written)
    with pytest.raises(ValueError, match="has 5 partitions"):
        exchange.read_sections(files, 5)
    rows = np.random.default_rng(1).integers(0, 256, (1000, 16), dtype=np.uint8)
    storage.write_bytes(f"{root}/rows.bin", rows.tobytes())
    pick = np.array([999, 3, 500, 3, 0, 501])
    assert np.array_equal(exchange.read_rows(f"{root}/rows.bin", pick, 16), rows[pick])


def test_sections_and_rows_on_local_disk(tmp_path):
    roundtrip(str(tmp_path))


@pytest.mark.slow
def test_sections_and_rows_on_s3(s3_url):
    roundtrip(s3_url)


def test_byte_string_fields_widen_across_writers(tmp_path):
    short = np.array([(1, b"ab")], dtype=[("doc", "<i8"), ("name", "S2")])
    long = np.array([(2, b"a-much-longer-id")], dtype=[("doc", "<i8"), ("name", "S16")])
    for i, recs in enumerate((short, long)):
        exchange.write_sections(str(tmp_path / f"{i}.bin"), recs, np.zeros(1, np.int64), 1)
    got = exchange.read_section([str(tmp_path / "0.bin"), str(tmp_path / "1.bin")], 0)
    assert got["name"].tolist() == [b"ab", b"a-much-longer-id"] and got["doc"].tolist() == [1, 2]


def test_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"not a partitioned file at all")
    with pytest.raises(ValueError, match="not a partitioned record file"):
        exchange.read_sections([str(tmp_path / "x.bin")], 0)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_byte_sections_read_one_or_a_run_past_the_first_header_read(where, tmp_path, request):
    """Variable-length sections (tokenize's): 5,000 partitions put most offsets past the first read of the
    header; a section, and a run of consecutive ones, come back with their offsets, as written."""
    root = request.getfixturevalue("s3_url") if where == "s3" else str(tmp_path)
    rng = np.random.default_rng(1)
    files, blobs = [], []
    for w in range(2):
        sections = [rng.bytes(int(n)) if n % 3 else b"" for n in rng.integers(0, 40, 5000)]
        url = f"{root}/bytes-{w}.bin"
        exchange.write_byte_sections(url, sections)
        files.append(url)
        blobs.append(sections)
    for p in (0, 1, 4321, 4999):
        got = exchange.read_sections(files, p)
        assert [g.tobytes() for g in got] == [b[p] for b in blobs]
    for (data, offsets, dtype), sections in zip(exchange.read_spans(files, 4000, 4100), blobs, strict=True):
        assert dtype == np.dtype([("f0", "u1")]) and len(offsets) == 101
        assert [data[offsets[k] : offsets[k + 1]] for k in range(100)] == sections[4000:4100]
