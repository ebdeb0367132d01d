from __future__ import annotations

import gzip
import os
import zlib

import fsspec
import pytest
from fastwarc.warc import ArchiveIterator

from pipeline.stats import Stats
from pipeline.warc import CorruptInputError, WarcResponse, iter_warc_responses
from pipeline.warc_http import parse_http_response
from tests.pipeline.conftest import DATA, SHARED, needs_shared


def read(path, **kwargs) -> tuple[list[WarcResponse], Stats]:
    stats = Stats()
    return list(iter_warc_responses(str(path), stats, **kwargs)), stats


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
    # record after it is found again
    resps, stats = read(DATA / "warcio-example-trunc.warc")
    assert resps == []
    assert stats.counters["digest_mismatch"] == 1
    assert stats.counters["warc_records_request"] == 1
    assert stats.counters["corrupt_records"] == 2


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
        (_damaged((DATA / "sample-20.warc.gz").read_bytes()[:2000], 12, 60), "gzip data is corrupt"),
    ],
    ids=["empty", "random", "gzipped-html", "broken-gzip"],
)
def test_not_a_warc(tmp_path, content, message):
    path = tmp_path / "input.warc.gz"
    path.write_bytes(content)
    with pytest.raises(CorruptInputError, match=message) as err:
        read(path)
    assert err.value.path == str(path)


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
    gz = zlib.compress(b"<p>deflated</p>")
    assert (
        parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + gz)[2]
        == b"<p>deflated</p>"
    )
    broken = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip at all")
    assert broken[2] == b"not gzip at all" and "does not decompress" in broken[3]
    assert parse_http_response(b"<html>no status line</html>") is None


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
    "edge/warcio-example-trunc.warc": (0, 2),
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
