"""Build tests/data/bad/: WARC files that are broken on purpose, good real pages before and after each damage.

Every record is written from scratch here (WARC/1.1, gzip per record unless the name ends in .warc), with
fixed record ids, dates and gzip mtimes and a seeded random generator: the same script writes the same
bytes. Records broken or odd on purpose have a URL on https://bad.example/; every other response record is
a real page (WCXB dev pages from ../shared/data, CC-BY-4.0, see ATTRIBUTION.md) that a reader must keep:
tests/data/bad-inputs.json lists their record ids per file.
Run once by hand; the tests only read the results.

    .venv/bin/python tests/data/make_bad_inputs.py
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import uuid
import zlib
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType

SHARED = Path("/work/shared/data")
HERE = Path(__file__).resolve().parent
OUT = HERE / "bad"
SAMPLE = SHARED / "warc/cclike-sample-small.warc.gz"
GOOD_URLS = (  # the smallest real pages of the sample that trafilatura keeps (about 3-7 KB gzipped)
    "https://news.ycombinator.com/jobs",
    "https://www.gcccd.edu/online/student/online-student-help-desk/tips-online-success.php",
    "https://www.zoho.com/people/",
    "https://steamritual.com/espresso-machines-under-500/",
)
DATE = "2026-01-15T00:00:00Z"
# our own text (no third-party rights): a Russian page for the cp1251-declared-as-UTF-8 case
RUSSIAN = (
    "Москва — столица России и крупнейший по численности населения город страны. Город стоит на реке "
    "Москве, в центре Восточно-Европейской равнины. Здесь работают университеты, театры, музеи и "
    "библиотеки, а метрополитен перевозит миллионы пассажиров каждый день. Летом жители отдыхают в "
    "парках и на набережных, зимой катаются на коньках и лыжах. Старые улицы центра соседствуют с "
    "новыми районами, где строят жильё, школы и больницы."
)


REAL: dict[str, list[str]] = {}  # file -> the record ids of its real pages (bad-inputs.json)


class Warc:
    """One WARC file being written: records get ids from the file name and their number in it."""

    def __init__(self, name: str, gzipped: bool = True):
        self.name, self.gzipped, self.parts, self.n = name, gzipped, [], 0
        REAL[name] = []

    def record(self, rtype: str, url: str, block: bytes, *, content_type: str, **opts) -> bytes:
        """One record's bytes. opts: length (a Content-Length to write instead of the true one),
        record_id (False: none), digest (False: none, or a wrong one as bytes), extra (header lines)."""
        self.n += 1
        rid = uuid.uuid5(uuid.NAMESPACE_URL, f"tokenmill-bad/{self.name}/{self.n}")
        digest = opts.get("digest", True)
        if digest is True:
            digest = b"sha1:" + base64.b32encode(hashlib.sha1(block).digest())
        head = [b"WARC/1.1", b"WARC-Type: " + rtype.encode(), b"WARC-Date: " + DATE.encode()]
        if opts.get("record_id", True):
            head.append(f"WARC-Record-ID: <urn:uuid:{rid}>".encode())
        if rtype == "response" and not url.startswith("https://bad.example/"):
            offset = sum(map(len, self.parts))  # what a reader must call a record without an id
            REAL[self.name].append(
                f"<urn:uuid:{rid}>" if opts.get("record_id", True) else f"<tokenmill:{self.name}@{offset}>"
            )
        head += [b"WARC-Target-URI: " + url.encode(), b"Content-Type: " + content_type.encode()]
        head += [b"WARC-Block-Digest: " + digest] if digest else []
        head += [line.encode() for line in opts.get("extra", ())]
        head.append(b"Content-Length: %d" % opts.get("length", len(block)))
        return b"\r\n".join(head) + b"\r\n\r\n" + block + b"\r\n\r\n"

    def add(self, data: bytes, *, raw: bool = False) -> Warc:
        """Append a record (a gzip member of its own unless the file is plain), or raw bytes as they are."""
        self.parts.append(data if raw or not self.gzipped else gz(data))
        return self

    def warcinfo(self) -> Warc:
        fields = f"software: tokenmill tests/data/make_bad_inputs.py\r\nWARC-Filename: {self.name}\r\n"
        return self.add(self.record("warcinfo", "", fields.encode(), content_type="application/warc-fields"))

    def response(self, url: str, http: bytes, **opts) -> Warc:
        return self.add(
            self.record("response", url, http, content_type="application/http; msgtype=response", **opts)
        )

    def write(self) -> None:
        (OUT / self.name).write_bytes(b"".join(self.parts))


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def http(body: bytes, content_type: str = "text/html; charset=utf-8", extra: tuple[str, ...] = ()) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", *extra, f"Content-Length: {len(body)}"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def good_pages() -> dict[str, bytes]:
    """url -> the HTTP block of the real page's response record in the sample."""
    pages = {}
    for rec in ArchiveIterator(str(SAMPLE), record_types=WarcRecordType.response, parse_http=False):
        url = rec.headers.get("WARC-Target-URI")
        if url in GOOD_URLS:
            pages[url] = rec.reader.read()
    return pages


def inflating_gzip(size: int) -> bytes:
    """A gzip stream of `size` spaces, compressed in pieces (never `size` bytes in memory)."""
    c, piece, out = zlib.compressobj(9, zlib.DEFLATED, 31), b" " * (1 << 20), []
    for _ in range(size >> 20):
        out.append(c.compress(piece))
    return b"".join(out) + c.flush()


def tiny_pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>"
        b"endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = random.Random(20260115)
    pages = good_pages()
    hn, college, zoho, coffee = (pages[u] for u in GOOD_URLS)

    def around(name: str, *bad: tuple[str, bytes, dict], gzipped: bool = True) -> Warc:
        """warcinfo, a good page, the bad records, another good page."""
        w = Warc(name, gzipped).warcinfo().response(GOOD_URLS[0], hn)
        for url, block, opts in bad:
            w.response(url, block, **opts)
        return w.response(GOOD_URLS[1], college)

    def bad(path: str, block: bytes, **opts) -> tuple[str, bytes, dict]:
        return f"https://bad.example/{path}", block, opts

    small = http(
        b"<html><body><p>" + b"A page whose record lies about its length. " * 30 + b"</p></body></html>"
    )

    # --- files that are no WARC at all ---
    (OUT / "garbage.warc.gz").write_bytes(rng.randbytes(4096))
    (OUT / "empty.warc.gz").write_bytes(b"")
    (OUT / "html-named-warc.warc.gz").write_bytes(
        b"<!DOCTYPE html>\n<html><body><p>Not a WARC.</p></body></html>\n"
    )
    (OUT / "pdf-named-warc.warc.gz").write_bytes(tiny_pdf())

    # --- framing damage: the records before and after must be read ---
    w = around("truncated.warc.gz")
    w.response("https://bad.example/truncated", zoho)
    w.parts[-1] = w.parts[-1][: len(w.parts[-1]) // 2]  # the file ends in the middle of a record
    w.write()
    around(
        "content-length-too-small.warc.gz", bad("short", small, length=len(small) - 200, digest=False)
    ).write()
    around(
        "content-length-too-large.warc.gz", bad("long", small, length=len(small) + 300, digest=False)
    ).write()
    w = around("content-length-1gb.warc.gz", bad("1gb", small, length=1 << 30, digest=False))
    w.response(GOOD_URLS[2], zoho).write()  # a 1 GB length would swallow both pages after it
    w = Warc("content-length-lies.warc", gzipped=False).warcinfo().response(GOOD_URLS[0], hn)
    w.response("https://bad.example/plain-short", small, length=len(small) - 200, digest=False)
    w.response(GOOD_URLS[1], college)
    w.response("https://bad.example/plain-long", small, length=len(small) + 300, digest=False)
    w.response(GOOD_URLS[0], hn)
    w.response("https://bad.example/plain-1gb", small, length=1 << 30, digest=False)
    w.response(GOOD_URLS[1], college).write()
    w = Warc("empty-gzip-member.warc.gz").warcinfo().response(GOOD_URLS[0], hn)
    w.add(gz(b""), raw=True).response(GOOD_URLS[1], college).add(gz(b""), raw=True).response(
        GOOD_URLS[2], zoho
    )
    w.write()
    w = Warc("garbage-between-records.warc.gz").warcinfo().response(GOOD_URLS[0], hn)
    w.add(rng.randbytes(3000), raw=True).response(GOOD_URLS[1], college).write()
    w = around("damaged-gzip-member.warc.gz", bad("damaged", zoho))
    member, mid = bytearray(w.parts[2]), len(w.parts[2]) // 2
    member[mid : mid + 60] = bytes(b ^ 0x5A for b in member[mid : mid + 60])  # deflate data, after the header
    w.parts[2] = bytes(member)
    w.write()
    around(
        "bad-digest.warc.gz", bad("digest", small, digest=b"sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    ).write()
    w = Warc("no-record-id.warc.gz").warcinfo()
    w.response(GOOD_URLS[0], hn, record_id=False).response(GOOD_URLS[1], college, record_id=False).write()

    # --- payloads that are too big or too slow ---
    big = b"<html><body><p>" + b"A very large page. " * 50 + b"</p>" + b" " * (40 << 20) + b"</body></html>"
    around("page-40mb.warc.gz", bad("40mb", http(big))).write()
    bomb = inflating_gzip(1 << 30)  # 1 GiB of spaces behind Content-Encoding: gzip
    around("gzip-bomb.warc.gz", bad("gzip-bomb", http(bomb, extra=("Content-Encoding: gzip",)))).write()
    words = "lorem ipsum dolor sit amet consectetur "
    links = f"<a href='/x'>{words}</a> text {words} " * 40_000  # trafilatura takes tens of seconds on it
    slow = f"<html><body><div>{links}</div></body></html>".encode()
    around("html-bomb.warc.gz", bad("html-bomb", http(slow))).write()

    # --- HTTP and charsets ---
    ru = f'<html><head><meta charset="utf-8"><title>Москва</title></head><body><article><p>{RUSSIAN}</p>'
    ru += f"<p>{RUSSIAN}</p></article></body></html>"
    cp1251 = http(ru.encode("cp1251"), "text/html; charset=utf-8")
    around("cp1251-declared-utf8.warc.gz", bad("cp1251", cp1251)).write()
    cp1252 = coffee.split(b"\r\n\r\n", 1)[1].decode("utf-8").encode("cp1252", "xmlcharrefreplace")
    labels = ("base64", "rot13", "zlib", "hex", "uu", "utf-16", "x-user-defined", "bogus-charset")
    w = Warc("charset-labels.warc.gz").warcinfo().response(GOOD_URLS[0], hn)
    for label in labels:  # a real page in cp1252 (not UTF-8) behind each label
        w.response(GOOD_URLS[3] + f"?charset={label}", http(cp1252, f"text/html; charset={label}"))
    w.response(GOOD_URLS[1], college).write()
    broken_status = b"HTTX/1.1 2OO OK\r\nContent-Type: text/html\r\n\r\n" + small.split(b"\r\n\r\n", 1)[1]
    junk_headers = zoho.replace(b"\r\n", b"\r\nX-Junk \x00\x01\xff no colon\r\n: empty name\r\n", 1)
    w = around("broken-http-header.warc.gz", bad("broken-status-line", broken_status))
    w.response(GOOD_URLS[2] + "?junk-headers", junk_headers).write()  # junk lines among the headers: kept
    head, body = zoho.split(b"\r\n\r\n", 1)
    enc = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length")]
    gzipped = b"\r\n".join([*enc, b"Content-Encoding: gzip"]) + b"\r\n\r\n" + gz(body)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(gz(body)), gz(body))
    both = (
        b"\r\n".join([*enc, b"Content-Encoding: gzip", b"Transfer-Encoding: chunked"]) + b"\r\n\r\n" + chunked
    )
    w = around("gzip-encoded-body.warc.gz")
    w.response(GOOD_URLS[2] + "?gzip", gzipped).response(GOOD_URLS[2] + "?chunked-gzip", both).write()
    fine = b"Two stray NUL bytes in an otherwise fine page of text. " * 20
    nul = http(b"<html><body><p>" + fine + b"\x00" + fine + b"\x00</p></body></html>")  # kept, NULs removed
    binary = http(rng.randbytes(4000))  # binary bytes labelled text/html
    around("nul-and-binary.warc.gz", bad("sparse-nul", nul), bad("binary", binary)).write()

    (HERE / "bad-inputs.json").write_text(json.dumps(REAL, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(list(OUT.iterdir()))} files, {total:,} bytes in {OUT}")


if __name__ == "__main__":
    main()
