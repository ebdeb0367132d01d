from __future__ import annotations

import gzip
import io
import os
import zlib

import fsspec
import pytest
from fastwarc.warc import ArchiveIterator

from pipeline.stats import Stats
from pipeline.warc import CorruptInputError, WarcResponse, _digest_ok, iter_warc_records, iter_warc_responses
from pipeline.warc_http import parse_http_response
from tests.pipeline.conftest import BAD, DATA, SHARED, needs_shared


def read(path, **kwargs) -> tuple[list[WarcResponse], Stats]:
    stats = Stats()
    return list(iter_warc_responses(str(path), stats, **kwargs)), stats


def records(path, **kwargs):
    stats = Stats()
    return list(iter_warc_records(str(path), stats, **kwargs)), stats


def _damaged(data: bytes, start: int, end: int) -> bytes:
    out = bytearray(data)
    for i in range(start, end):
        out[i] ^= 0x5A
    return bytes(out)


# --- the Common Crawl-shaped sample ------------------------------------------------------------------------


def test_sample_responses_and_counts(sample_responses):
    resps, stats = read(DATA / "sample-20.warc.gz")
    assert resps == sample_responses
    assert len(resps) == 22
    assert [r.status for r in resps].count(301) == 1
    assert sum(r.content_type.startswith("application/pdf") for r in resps) == 1
    first = resps[0]
    assert first.record_id == "<urn:uuid:4208e61e-cfad-4187-8dd6-fbacdc75d400>"
    assert first.url == "https://www.itsalltriptome.com/how-to-book-a-flight-for-beginners/"
    assert first.date == "2026-01-15T00:00:00Z"
    assert first.status == 200 and first.content_type == "text/html; charset=UTF-8"
    assert first.body.lstrip().startswith(b"<!DOCTYPE html>")
    c = stats.counters
    assert c["warc_responses"] == 22 and c["warc_records_response"] == 22
    assert (
        c["warc_records_warcinfo"] == 1
        and c["warc_records_request"] == 20
        and c["warc_records_metadata"] == 20
    )
    assert c["warc_records"] == 63
    assert stats.errors == [] and c["corrupt_records"] == 0


def test_offsets_point_at_the_records(sample_responses):
    # the offset is where the record's gzip member starts: seek there and the same record comes back
    with open(DATA / "sample-20.warc.gz", "rb") as f:
        for resp in sample_responses[:5]:
            f.seek(resp.offset)
            rec = next(iter(ArchiveIterator(f, parse_http=False)))
            assert rec.record_id == resp.record_id


def test_fsspec_urls(tmp_path):
    # any fsspec URL reads alike (s3:// goes the same way): file:// and an in-memory filesystem
    local, _ = read(DATA / "warcio-example.warc.gz")
    via_url, _ = read(f"file://{DATA / 'warcio-example.warc.gz'}")
    with fsspec.open("memory://tokenmill-test/example.warc.gz", "wb") as f:
        f.write((DATA / "warcio-example.warc.gz").read_bytes())
    in_memory, _ = read("memory://tokenmill-test/example.warc.gz")
    assert local == via_url == in_memory and len(local) == 1


# --- corrupt records: counted, skipped, the rest of the file still read -----------------------------------


def test_truncated_file_keeps_what_came_before():
    resps, stats = read(DATA / "sample-trunc.warc.gz")
    assert len(resps) == 3  # the first three pages; the fourth response is cut in half
    assert stats.counters["corrupt_records"] == 1
    assert len(stats.errors) >= 1 and "sample-trunc.warc.gz@" in stats.errors[0]


def test_corrupt_member_in_the_middle_is_skipped(tmp_path, sample_responses):
    victim = sample_responses[4]
    path = tmp_path / "damaged.warc.gz"  # the deflate stream of one response record damaged
    path.write_bytes(
        _damaged((DATA / "sample-20.warc.gz").read_bytes(), victim.offset + 300, victim.offset + 400)
    )
    resps, stats = read(path)
    assert [r.record_id for r in resps] == [r.record_id for r in sample_responses if r is not victim]
    assert stats.counters["corrupt_records"] == 1
    assert len(stats.errors) == 1 and f"{path}@" in stats.errors[0]


def test_garbage_between_members_is_skipped(tmp_path, sample_responses):
    data = (DATA / "sample-20.warc.gz").read_bytes()
    at = sample_responses[10].offset
    path = tmp_path / "garbage.warc.gz"
    path.write_bytes(data[:at] + os.urandom(5000) + data[at:])
    resps, stats = read(path)
    assert len(resps) == len(sample_responses)
    assert stats.counters["corrupt_records"] == 1


def test_garbage_in_a_plain_warc_is_skipped(tmp_path):
    plain = gzip.decompress((DATA / "warcio-example.warc.gz").read_bytes())
    response_at = plain.rindex(b"WARC/1.0\r\n", 0, plain.index(b"WARC-Type: response"))
    path = tmp_path / "garbage.warc"
    path.write_bytes(plain[:response_at] + b"this is not a record\r\n" * 20 + plain[response_at:])
    resps, stats = read(path)
    assert len(resps) == 1 and b"Example Domain" in resps[0].body
    assert stats.counters["corrupt_records"] == 1


def test_warcio_truncated_record_resynchronises():
    # Content-Length 2 bytes short: the digest fails, then the next header is misaligned; the request
    # record after it is found again. One damaged record, counted once (the misalignment is its doing).
    resps, stats = read(DATA / "warcio-example-trunc.warc")
    assert resps == []
    assert stats.counters["digest_mismatch"] == 1
    assert stats.counters["warc_records_request"] == 1
    assert stats.counters["corrupt_records"] == 1 and stats.counters["warc_resyncs"] == 1


def test_clipped_record_is_corrupt():
    resps, stats = read(DATA / "resiliparse-clipped.warc.gz")
    assert resps == []
    assert stats.counters["corrupt_records"] == 1 and "cut short" in stats.errors[0]


def test_bad_block_digest():
    resps, stats = read(DATA / "warcio-example-wrong-chunks.warc.gz")
    assert resps == [] and stats.counters["digest_mismatch"] == 1
    resps, stats = read(DATA / "warcio-example-wrong-chunks.warc.gz", verify_digests=False)
    assert len(resps) == 1 and b"Example Domain" in resps[0].body


# --- not a WARC at all: CorruptInputError -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (os.urandom(4096), "not a WARC file"),
        (gzip.compress(b"<html><body>hello</body></html>"), "not a WARC file"),
        (_damaged(gzip.compress(b"WARC/1.1\r\n" + bytes(range(256)) * 2), 12, 40), "no WARC record after it"),
    ],
    ids=["empty", "random", "gzipped-html", "broken-gzip"],
)
def test_not_a_warc(tmp_path, content, message):
    path = tmp_path / "input.warc.gz"
    path.write_bytes(content)
    with pytest.raises(CorruptInputError, match=message) as err:
        read(path)
    assert err.value.path == str(path)


def test_damaged_first_member_skips_to_the_next(tmp_path):
    # the warcinfo record's deflate data damaged: the records after it are read, the damage reported
    path = tmp_path / "first.warc.gz"
    path.write_bytes(_damaged((DATA / "sample-20.warc.gz").read_bytes(), 12, 60))
    resps, stats = read(path)
    assert len(resps) == 22
    assert stats.counters["corrupt_records"] == 1 and stats.counters["warc_records_warcinfo"] == 0
    assert stats.errors[0].startswith(f"{path}@0: ") and "reading resumed at byte" in stats.errors[0]


def test_arc_is_rejected(tmp_path):
    with pytest.raises(CorruptInputError, match="ARC format is not supported"):
        read(DATA / "warcio-example.arc")
    gz = tmp_path / "example.arc.gz"
    gz.write_bytes(gzip.compress((DATA / "warcio-example.arc").read_bytes()))
    with pytest.raises(CorruptInputError, match="ARC format is not supported"):
        read(gz)


# --- real captures from other crawlers --------------------------------------------------------------------


def test_common_crawl_record():
    resps, stats = read(DATA / "cc-main-2024-22-whirlwind.warc.gz")
    assert len(resps) == 1
    assert resps[0].url == "https://an.wikipedia.org/wiki/Escopete" and resps[0].status == 200
    assert stats.counters["warc_records"] == 4


def test_heritrix_2008_warc_017():
    resps, stats = read(DATA / "heritrix-2008-warc017-head.warc.gz")
    assert stats.errors == []
    dns = resps[0]
    assert dns.url == "dns:www.archive.org" and dns.status is None and dns.content_type == "text/dns"
    assert any(r.status == 200 and r.content_type.startswith("text/html") for r in resps)


def test_chunked_and_gzip_payloads_are_decoded():
    (chunked,), _ = read(DATA / "warcio-example-iana.org-chunked.warc")
    assert chunked.body.lstrip().lower().startswith(b"<!doctype html>")
    assert chunked.body.rstrip().endswith(b"</html>")
    (gzipped,), _ = read(DATA / "warcio-example.warc.gz")  # Content-Encoding: gzip
    assert b"<title>Example Domain</title>" in gzipped.body


def test_parse_http_response_variants():
    status, ctype, body, problem = parse_http_response(
        b"HTTP/1.0 301 Moved\nLocation: /x\nContent-Type: text/html\n\n"
    )
    assert (status, ctype, body, problem) == (301, "text/html", b"", "")
    assert parse_http_response(b"HTTP/1.1 204 No Content\r\n")[:3] == (204, "", b"")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert parse_http_response(chunked)[2] == b"hello world"
    not_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n<p>plain</p>"  # servers lie
    assert parse_http_response(not_chunked)[2:] == (b"<p>plain</p>", "")
    assert parse_http_response(b"<html>no status line</html>") is None
    assert parse_http_response(b"HTTX/1.1 2OO OK\r\n\r\n<p>x</p>") is None


def _encoded(coding: str, body: bytes) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: {coding}\r\n\r\n".encode() + body


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _brotli(data: bytes) -> bytes:
    from fastwarc.stream_io import BrotliWriter

    out = io.BytesIO()
    with BrotliWriter(out) as w:
        w.write(data)
    return out.getvalue()


PAGE = b"<html><body><p>" + b"content encodings undone " * 40 + b"</p></body></html>"


@pytest.mark.parametrize(
    "coding, body",
    [
        ("gzip", gzip.compress(PAGE)),
        ("x-gzip", gzip.compress(PAGE)),  # FastWARC's auto_decode rejects it and stops the file
        ("deflate", zlib.compress(PAGE)),
        ("deflate", _raw_deflate(PAGE)),  # raw deflate sent as "deflate": FastWARC fails on it
        ("br", _brotli(PAGE)),
        ("gzip, br", _brotli(gzip.compress(PAGE))),  # applied in order: undone from the last
        ("gzip", PAGE),  # the server says gzip but sends the page: markup is kept as it is
        ("gzip", gzip.compress(PAGE)[: len(gzip.compress(PAGE)) // 2]),  # cut short: what inflates is kept
    ],
    ids=["gzip", "x-gzip", "zlib", "raw-deflate", "br", "gzip-br", "lying-gzip", "cut-gzip"],
)
def test_content_encodings(coding, body):
    status, _, payload, problem = parse_http_response(_encoded(coding, body))
    assert status == 200 and problem == ""
    assert payload == PAGE or (coding == "gzip" and payload and PAGE.startswith(payload))


def test_undecodable_and_oversized_payloads():
    assert parse_http_response(_encoded("gzip", b"\x00\x01binary, not gzip"))[2:] == (
        b"",
        "bad_content_encoding",
    )
    assert parse_http_response(_encoded("compress", b"\x1f\x9d\x90"))[2:] == (b"", "bad_content_encoding")
    bomb = gzip.compress(b" " * (4 << 20))  # 4 MiB of spaces in 4 KB
    assert parse_http_response(_encoded("gzip", bomb), max_bytes=1 << 20)[2:] == (b"", "payload_too_large")
    assert len(parse_http_response(_encoded("gzip", bomb), max_bytes=8 << 20)[2]) == 4 << 20
    plain = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2000
    assert parse_http_response(plain, max_bytes=1000)[2:] == (b"", "payload_too_large")


# --- the bad-input corpus (tests/data/bad, made by tests/data/make_bad_inputs.py) --------------------------


@pytest.mark.parametrize(
    "name, lies",
    [
        ("content-length-too-small.warc.gz", 1),
        ("content-length-too-large.warc.gz", 1),
        ("content-length-1gb.warc.gz", 1),
        ("content-length-lies.warc", 3),  # plain WARC: too small, too large, 1 GB
    ],
)
def test_lying_content_lengths(name, lies):
    recs, stats = records(BAD / name)
    liars = [r for r in recs if r.url.startswith("https://bad.example/")]
    assert len(liars) == lies and all(r.problem == "corrupt_record" and r.block is None for r in liars)
    good = [r for r in recs if r not in liars]
    assert len(good) == len(recs) - lies >= 2 and all(r.problem == "" and r.block for r in good)
    c = stats.counters
    assert c["corrupt_records"] == lies and c["warc_resyncs"] == lies
    assert all(f"{BAD / name}@" in e and "does not match the record's bytes" in e for e in stats.errors)
    # every liar sits between two good pages: the records after it were found again
    assert recs[-1] in good


def test_empty_gzip_members_do_not_end_the_file():
    recs, stats = records(BAD / "empty-gzip-member.warc.gz")
    assert len(recs) == 3 and all(not r.problem for r in recs)
    assert stats.counters["warc_resyncs"] == 2 and stats.counters["corrupt_records"] == 0
    assert all("empty gzip member" in e for e in stats.errors)


def test_records_over_the_cap_are_not_read():
    recs, stats = records(BAD / "page-40mb.warc.gz")
    (big,) = [r for r in recs if r.problem]
    assert big.problem == "record_too_large" and big.block is None and big.content_length > 40 << 20
    assert len(recs) == 3 and stats.counters["corrupt_records"] == 0
    # a small cap: the pages over it are flagged, the rest still read
    recs, _ = records(DATA / "sample-20.warc.gz", max_record_bytes=100_000)
    assert {r.problem for r in recs} == {"", "record_too_large"} and len(recs) == 22


def test_records_without_id_get_one_from_file_and_offset(tmp_path):
    recs, stats = records(BAD / "no-record-id.warc.gz")
    ids = [r.record_id for r in recs]
    assert ids == [f"<tokenmill:no-record-id.warc.gz@{r.offset}>" for r in recs] and len(set(ids)) == 2
    assert stats.counters["records_without_id"] == 2
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "no-record-id.warc.gz"
    copy.write_bytes((BAD / "no-record-id.warc.gz").read_bytes())
    assert [r.record_id for r in records(copy)[0]] == ids  # the same file at another path: the same ids


def test_one_gzip_stream_for_the_whole_file(tmp_path):
    # `gzip file.warc` makes one member: records inside it cannot be sought, but all are read
    path = tmp_path / "one-stream.warc.gz"
    path.write_bytes(gzip.compress(gzip.decompress((DATA / "sample-20.warc.gz").read_bytes())))
    recs, stats = records(path)
    assert len(recs) == 22 and not any(r.problem for r in recs) and stats.errors == []


def test_storage_errors_are_raised_not_counted(tmp_path):
    with pytest.raises(FileNotFoundError):
        records(tmp_path / "missing.warc.gz")


def test_digests():
    import base64
    import hashlib

    block = b"some block"
    sha1 = hashlib.sha1(block).digest()
    assert _digest_ok("sha1:" + base64.b32encode(sha1).decode(), block) is True
    assert _digest_ok("sha1:" + sha1.hex(), block) is True
    assert _digest_ok("SHA-1:" + base64.b64encode(sha1).decode(), block) is True  # FastWARC: False
    assert _digest_ok("sha1:" + base64.b32encode(b"x" * 20).decode(), block) is False
    assert _digest_ok("blake3:ABCD", block) is None and _digest_ok(None, block) is None  # cannot judge


# --- every edge and real file of the shared data folder ---------------------------------------------------

EXPECTED = {  # file -> (responses, corrupt records) or the CorruptInputError message
    "edge/resiliparse-block-sized-records.warc.gz": (0, 0),
    "edge/resiliparse-clipped.warc.gz": (0, 1),
    "edge/warcio-bad.arc": "ARC format",
    "edge/warcio-example-bad-non-chunked.warc.gz": (1, 0),
    "edge/warcio-example-bad.warc.gz.bad": (2, 0),
    "edge/warcio-example-digest.warc": (0, 0),
    "edge/warcio-example-iana.org-chunked.warc": (1, 0),
    "edge/warcio-example-resource.warc.gz": (0, 0),
    "edge/warcio-example-space-in-target-uri.warc.gz": (0, 0),
    "edge/warcio-example-space-in-url.arc": "ARC format",
    "edge/warcio-example-trunc.warc": (0, 1),
    "edge/warcio-example-wget-bad-target-uri.warc.gz": (1, 0),
    "edge/warcio-example-wrong-chunks.warc.gz": (0, 1),
    "edge/warcio-example.arc": "ARC format",
    "edge/warcio-example.arc.gz": "ARC format",
    "edge/warcio-example.warc": (1, 0),
    "edge/warcio-example.warc.gz": (1, 0),
    "edge/warcio-post-test.warc.gz": (3, 0),
    "real/cc-main-2024-22-whirlwind.warc.gz": (1, 0),
    "real/cc-main-2024-22-whirlwind.warc.wat.gz": (0, 0),
    "real/cc-main-2024-22-whirlwind.warc.wet.gz": (0, 0),
    "real/heritrix-2008-warc017.warc.gz": (299, 0),
    "real/wget-sample-0000.warc.gz": (22, 0),
    "real/wget-sample-0001.warc.gz": (15, 0),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_edge_and_real_files(name):
    expected = EXPECTED[name]
    if isinstance(expected, str):
        with pytest.raises(CorruptInputError, match=expected):
            read(SHARED / "warc" / name)
        return
    resps, stats = read(SHARED / "warc" / name)
    assert (len(resps), stats.counters["corrupt_records"]) == expected
    for r in resps:
        assert r.record_id.startswith("<urn:") and not r.url.startswith("<")


@needs_shared
def test_shared_folder_lists_no_surprise():
    found = {f"{d}/{n}" for d in ("edge", "real") for n in os.listdir(SHARED / "warc" / d)}
    assert found == set(EXPECTED)
