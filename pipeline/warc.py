"""Read the HTTP responses of one WARC file (gzip per record or plain), surviving corrupt records.

fastwarc does the record framing and gzip (the fast path); fsspec opens the file, so local paths and
s3:// read alike. A corrupt record is counted, reported and skipped: the reader resynchronises on the
next gzip member (or the next `WARC/` line in a plain file) and goes on. A file that is not a WARC at
all raises CorruptInputError before anything is yielded, so the caller can report it and move on.
"""

from __future__ import annotations

import hashlib
import zlib
from base64 import b16decode, b32decode, b64decode
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import fsspec
from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipeline.stats import Stats
from pipeline.warc_http import parse_http_response

GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/"
SCAN_CHUNK = 1 << 20


class CorruptInputError(Exception):
    """The file is not a (readable) WARC file at all: nothing in it can be used."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WarcResponse:
    record_id: str  # WARC-Record-ID as in the file, "<urn:uuid:...>"
    url: str
    date: str  # WARC-Date, ISO 8601 as written
    status: int | None  # HTTP status; None for non-HTTP responses (dns:, ftp:)
    content_type: str  # HTTP Content-Type header (charset included), else the WARC Content-Type
    body: bytes  # HTTP payload, transfer and content encodings removed
    offset: int  # byte offset of the record (of its gzip member) in the file
    truncated: str = ""  # WARC-Truncated: the crawler cut the payload ("length", "time"...)


def iter_warc_responses(path: str, stats: Stats, *, verify_digests: bool = True) -> Iterator[WarcResponse]:
    """Yield the response records of `path`, skipping (and reporting) corrupt ones.

    With verify_digests, a response whose WARC-Block-Digest does not match its bytes is corrupt.
    Raises CorruptInputError if the file is empty, not a WARC (random bytes, ARC) or unreadable at byte 0.
    """
    with fsspec.open(path, "rb") as f:
        gzipped = _sniff(f, path)
        start = 0
        while True:
            f.seek(start)
            last = None  # offset of the last record framed whole in this segment
            try:
                for rec in ArchiveIterator(f, parse_http=False):
                    last = rec.stream_pos
                    resp = _read_record(rec, path, stats, verify_digests)
                    if resp is not None:
                        yield resp
                return  # clean end of file
            except OSError as e:
                # fastwarc stops at the first record it cannot frame or inflate: skip to the next record start
                blamed = start if last is None else last
                if last is not None or start == 0:
                    # a new incident, not the same one met again at a resync candidate
                    stats.add("corrupt_records")
                    stats.error(f"{path}@{blamed}: unreadable data at or after this record ({e})")
                nxt = _find_next(
                    f, blamed + 1, GZIP_MAGIC if gzipped else WARC_MAGIC, at_line_start=not gzipped
                )
                if nxt is None:
                    stats.add("files_cut_short")
                    stats.error(
                        f"{path}@{blamed}: no readable record after this offset; rest of file skipped"
                    )
                    return
                start = nxt


def _sniff(f: BinaryIO, path: str) -> bool:
    """Check the first bytes: True for gzip, False for a plain WARC; CorruptInputError otherwise."""
    head = f.read(1 << 16)
    if not head:
        raise CorruptInputError(path, "empty file")
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:
        try:
            head = zlib.decompressobj(31).decompress(head, 256)
        except zlib.error as e:
            raise CorruptInputError(path, f"gzip data is corrupt at byte 0 ({e})") from None
    head = head.lstrip()
    if head.startswith(b"filedesc://"):
        raise CorruptInputError(
            path,
            "ARC format is not supported (pre-2013 archives): convert it to WARC first (warcio recompress)",
        )
    if not head.startswith(WARC_MAGIC):
        raise CorruptInputError(path, f"not a WARC file (it starts with {head[:16]!r})")
    return gzipped


def _find_next(f: BinaryIO, pos: int, magic: bytes, at_line_start: bool) -> int | None:
    """Offset of the next `magic` at or after `pos` (after a newline if at_line_start), None if none."""
    needle = b"\n" + magic if at_line_start else magic
    skip = 1 if at_line_start else 0
    if at_line_start:
        pos -= 1  # the newline may sit just before pos
    f.seek(pos)
    while chunk := f.read(SCAN_CHUNK):
        i = chunk.find(needle)
        if i >= 0:
            return pos + i + skip
        pos += len(chunk) - len(needle) + 1  # overlap: the needle may straddle two chunks
        f.seek(pos)
        if len(chunk) < len(needle):
            break
    return None


def _read_record(rec, path: str, stats: Stats, verify_digests: bool) -> WarcResponse | None:
    rtype = rec.record_type
    stats.add("warc_records")
    stats.add(f"warc_records_{rtype}")
    if rtype != WarcRecordType.response:
        return None  # request, metadata, warcinfo, revisit: counted, not read
    headers = rec.headers
    block = rec.reader.read()
    if len(block) < rec.content_length:
        # the file ends (or its gzip member breaks off) inside this record
        return _corrupt(
            stats, path, rec.stream_pos, f"record cut short: {len(block)} of {rec.content_length} bytes"
        )
    if verify_digests and not _digest_ok(headers.get("WARC-Block-Digest"), block):
        stats.add("digest_mismatch")
        return _corrupt(stats, path, rec.stream_pos, "WARC-Block-Digest does not match the record")
    url = (headers.get("WARC-Target-URI") or "").strip().strip("<>")  # wget writes <url>
    status, content_type, body = None, headers.get("Content-Type") or "", block
    if url.startswith(("http:", "https:")) or block.startswith(b"HTTP/"):
        http = parse_http_response(block)
        if http is None:
            return _corrupt(stats, path, rec.stream_pos, "no HTTP status line in a response record")
        status, content_type, body, problem = http
        if problem:
            stats.add("http_decoding_errors")
            stats.error(f"{path}@{rec.stream_pos}: {problem}")
    stats.add("warc_responses")
    truncated = headers.get("WARC-Truncated") or ""
    if truncated:
        stats.add("warc_truncated_payloads")
    return WarcResponse(
        record_id=rec.record_id or "",
        url=url,
        date=headers.get("WARC-Date") or "",
        status=status,
        content_type=content_type,
        body=body,
        offset=rec.stream_pos,
        truncated=truncated,
    )


def _corrupt(stats: Stats, path: str, offset: int, reason: str) -> None:
    stats.add("corrupt_records")
    stats.error(f"{path}@{offset}: {reason}")
    return None


def _digest_ok(digest: str | None, block: bytes) -> bool:
    """Check a `algo:value` digest (base32 as the spec says; base16 and base64 as some tools write)."""
    if not digest or ":" not in digest:
        return True  # nothing to check
    algo, value = digest.split(":", 1)
    try:
        h = hashlib.new(algo.strip().lower().replace("-", ""), block).digest()
    except ValueError:
        return True  # unknown algorithm: cannot judge
    value = value.strip()
    for decode in (
        lambda v: b32decode(v.upper()),
        lambda v: b16decode(v.upper()),
        lambda v: b64decode(v.replace("-", "+").replace("_", "/"), validate=True),
    ):
        try:
            if decode(value) == h:
                return True
        except ValueError:
            continue
    return False
