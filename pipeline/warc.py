"""Read the records of one WARC file (gzip per record, one gzip stream, or plain) without losing any silently.

FastWARC frames the records and inflates gzip; fsspec opens the file (local, s3://, ...) and it is streamed,
never read whole. FastWARC trusts every Content-Length and stops at the first thing it cannot frame, and an
empty gzip member ends its iteration like the end of the file. So:
- a record is handed out only once the record after it has framed too: when FastWARC stops right after a
  record, that record's bytes are checked (its block must be followed by the CRLFCRLF the spec puts there,
  and in a gzip file its member must end there); if its Content-Length lies, it is handed out as corrupt;
- wherever FastWARC stops (bad bytes, or an "end of file" that is not one), our scanner looks for the next
  record start (a gzip member that inflates to `WARC/`, or a `WARC/` line in a plain file) and reading
  resumes there: records before and after any damage are read, the damage is counted and reported;
- a record over `max_record_bytes` is never read into memory: it is handed out without its block.
A file that is not a WARC at all raises CorruptInputError before anything is yielded. An error of the
underlying storage (a network failure, say) is raised as is: it says nothing about the file's bytes, and the
task should fail and be retried rather than commit a partial output.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from base64 import b16decode, b32decode, b64decode
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecordType

from pipeline.stats import Stats
from pipeline.storage import filesystem

GZIP_MAGIC = b"\x1f\x8b\x08"
SCAN_CHUNK = 1 << 20
HEAD_MAX = 64 << 10  # a WARC header longer than this is not one
TEXT_TYPES = WarcRecordType.response | WarcRecordType.conversion  # the records documents come from
_WARC_LINE = re.compile(rb"WARC/\d")
# the WARC headers a record keeps (for its document's metadata); the rest are counted, not carried
KEPT_HEADERS = ("WARC-Identified-Content-Language", "WARC-Refers-To", "WARC-Identified-Payload-Type")


class CorruptInputError(Exception):
    """The file is not a (readable) WARC file at all: nothing in it can be used."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WarcRecord:
    """One response or conversion record as framed in the file; `problem` says why it cannot be used."""

    offset: int  # where the record (its gzip member) starts in the file
    record_type: str  # "response", "conversion"
    record_id: str  # WARC-Record-ID, or <tokenmill:FILE@OFFSET> when the record has none: never ""
    url: str
    date: str  # WARC-Date, as written
    content_type: str  # the WARC Content-Type ("application/http; msgtype=response", "text/plain")
    content_length: int
    block: bytes | None  # the record block; None when the record is over the cap or corrupt
    problem: str = ""  # "" usable, "record_too_large", "corrupt_record"
    truncated: str = ""  # WARC-Truncated: the crawler cut the payload ("length", "time", ...)
    headers: dict[str, str] = field(default_factory=dict)  # the KEPT_HEADERS present


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
    problem: str = ""  # why the payload is unusable ("payload_too_large", "bad_http_response", ...)


def iter_warc_records(
    url: str,
    stats: Stats,
    *,
    max_record_bytes: int = 16 << 20,
    verify_digests: bool = True,
    record_types: WarcRecordType = TEXT_TYPES,
) -> Iterator[WarcRecord]:
    """Yield the records of `url` of `record_types`, corrupt and oversized ones included (see `problem`).

    Every record is counted (`warc_records`, `warc_records_<type>`); damage is counted (`corrupt_records`,
    `warc_resyncs`) and reported through `stats.error` as "<url>@<offset>: <what>". Raises CorruptInputError
    if the file is empty or not a WARC (random bytes, HTML, ARC, ...).
    """
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        reader = _Reader(_Source(f), url, stats, max_record_bytes, verify_digests, record_types)
        yield from reader.records()


def iter_warc_responses(url: str, stats: Stats, *, verify_digests: bool = True) -> Iterator[WarcResponse]:
    """The usable HTTP responses of `url`, parsed: a shortcut for benches and tests."""
    from pipeline.warc_http import http_response

    for rec in iter_warc_records(
        url, stats, verify_digests=verify_digests, record_types=WarcRecordType.response
    ):
        if not rec.problem:
            stats.add("warc_responses")
            yield http_response(rec)


class _Source:
    """The file as FastWARC reads it; remembers a failure of the storage so it is not taken for bad bytes."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self.f.read(size)
        except Exception as e:
            self.error = e
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()


@dataclass(slots=True)
class _Framed:
    """A record FastWARC framed, held back until the record after it frames too."""

    offset: int
    content_length: int
    record: WarcRecord | None  # None for record types not handed out
    sound: bool = False  # its block digest matched: its Content-Length is right
    unread: str = ""  # why its block could not be read (FastWARC cannot go on after it)


class _Reader:
    def __init__(self, src: _Source, url: str, stats: Stats, max_bytes: int, verify: bool, types):
        self.src, self.url, self.stats = src, url, stats
        self.max_bytes, self.verify, self.types = max_bytes, verify, types
        self.name = os.path.basename(url.rstrip("/"))
        self.ids_at: dict[int, int] = {}  # offset -> records given a made-up id there
        self.gzipped = _sniff(src, url)

    def records(self) -> Iterator[WarcRecord]:
        start: int | None = 0
        while start is not None:
            start = yield from self._segment(start)

    def _segment(self, start: int) -> Iterator[WarcRecord]:
        """Records from `start` until FastWARC stops; returns where to resume (None: the file is done)."""
        self.src.seek(start)
        self.src.error = None
        last: _Framed | None = None
        try:
            for rec in ArchiveIterator(self.src, parse_http=False):
                framed = self._frame(rec)
                if last is not None and last.record is not None:
                    yield last.record  # `rec` framed after it: its Content-Length held
                last = framed
                if framed.unread:
                    break  # its bytes do not inflate: FastWARC cannot go on after it
        except Exception as e:
            if self.src.error is not None:
                raise self.src.error from e  # the storage failed, not the file
            return (yield from self._stopped(start, last, f"unreadable data ({e})"))
        return (yield from self._stopped(start, last, (last.unread or None) if last else None))

    def _stopped(self, start: int, last: _Framed | None, error: str | None) -> Iterator[WarcRecord]:
        """FastWARC stopped after `last` (on `error`, or at what looked like the end): judge `last`, hand it
        out, and return where a record starts again (None: the file is done)."""
        judged = last is not None and last.record is not None and last.record.problem == "corrupt_record"
        if last is None:  # nothing framed at `start`: what is there is no record
            where, problem = start, error or "no WARC record here"
        elif last.unread:  # its header framed, its block did not inflate
            where, problem = last.offset, last.unread
        else:
            end = None if judged else self._end_of(last)
            where, problem = (last.offset, None) if end is None else (end, error)
            if end is None and not judged and not last.sound:  # its Content-Length lies
                problem = f"Content-Length {last.content_length} does not match the record's bytes"
                if last.record is not None:
                    last.record = replace(last.record, block=None, problem="corrupt_record")
        if last is not None and last.record is not None:
            yield last.record
        # from where + 1: a record starting at `where` would have been framed
        resume = self._find_next(where + 1)
        if last is None and start == 0 and resume is None:
            raise CorruptInputError(self.url, f"{problem} at byte 0, and no WARC record after it")
        if problem is not None:
            self.stats.add("corrupt_records")  # one incident: a record, or what should have been one
        elif resume is None:
            return None  # a clean end of file (or the end of a record already reported)
        else:  # FastWARC ended early with nothing wrong to see (an empty gzip member, say): nothing lost
            problem = (
                "after this corrupt record" if judged else "the WARC reader stopped here (empty gzip member?)"
            )
        if resume is None:
            self.stats.add("files_cut_short")
            self.stats.error(f"{self.url}@{where}: {problem}; no record after it, rest of file skipped")
            return None
        self.stats.add("warc_resyncs")
        self.stats.add("bytes_skipped", resume - where)
        self.stats.error(f"{self.url}@{where}: {problem}; reading resumed at byte {resume}")
        return resume

    def _frame(self, rec) -> _Framed:
        """Count `rec` and, if it is of a wanted type, read its block (up to the cap) into a WarcRecord."""
        self.stats.add("warc_records")
        self.stats.add(f"warc_records_{rec.record_type}")
        h, offset, length = rec.headers, rec.stream_pos, rec.content_length
        framed = partial(_Framed, offset, length)
        record = self._record(rec) if rec.record_type & self.types else None
        if h.get("Content-Length") is None:  # FastWARC frames a header cut short with length 0
            return framed(self._corrupt(offset, record, "WARC header cut short (no Content-Length)"))
        if length > self.max_bytes:  # not read: FastWARC streams past it
            return framed(record and replace(record, problem="record_too_large"))
        try:  # the other types are skipped here too, so damage inside them is blamed on them
            block = rec.reader.read() if record else b""
            rec.reader.consume()
        except Exception as e:
            if self.src.error is not None:
                raise
            return framed(
                record and replace(record, problem="corrupt_record"), unread=f"record unreadable ({e})"
            )
        if record is None:
            return framed(None)
        if len(block) < length:  # the data ends (or its gzip member breaks off) inside this record
            return framed(self._corrupt(offset, record, f"record cut short: {len(block)} of {length} bytes"))
        ok = _digest_ok(h.get("WARC-Block-Digest"), block) if self.verify else None
        if ok is False:
            self.stats.add("digest_mismatch")
            return framed(self._corrupt(offset, record, "WARC-Block-Digest does not match the record"))
        return framed(replace(record, block=block), sound=ok is True)

    def _record(self, rec) -> WarcRecord:
        h = rec.headers
        return WarcRecord(
            offset=rec.stream_pos,
            record_type=str(rec.record_type),
            record_id=self._record_id(rec.record_id, rec.stream_pos),
            url=(h.get("WARC-Target-URI") or "").strip().strip("<>"),  # wget writes <url>
            date=h.get("WARC-Date") or "",
            content_type=h.get("Content-Type") or "",
            content_length=rec.content_length,
            block=None,
            truncated=h.get("WARC-Truncated") or "",
            headers={k: v for k in KEPT_HEADERS if (v := h.get(k))},
        )

    def _corrupt(self, offset: int, record: WarcRecord | None, why: str) -> WarcRecord | None:
        """Count and report a record found corrupt while FastWARC can read on after it."""
        self.stats.add("corrupt_records")
        self.stats.error(f"{self.url}@{offset}: {why}")
        return record and replace(record, block=None, problem="corrupt_record")

    def _record_id(self, record_id: str | None, offset: int) -> str:
        """The record's id, or one made of the file's name and the offset: the same at any path, never ""."""
        if record_id and record_id.strip():
            return record_id.strip()
        self.stats.add("records_without_id")
        n = self.ids_at.get(offset, 0)
        self.ids_at[offset] = n + 1
        # records in one gzip stream share an offset (FastWARC cannot seek inside it): number them
        return f"<tokenmill:{self.name}@{offset}>" if n == 0 else f"<tokenmill:{self.name}@{offset}#{n}>"

    def _end_of(self, last: _Framed) -> int | None:
        """Offset just past the record at `last.offset` if its Content-Length holds, else None.

        It holds if its block is followed by CRLFCRLF (or by nothing but line ends up to where the data or,
        in a gzip file, the record's member ends). Gzip: the offset is where that member ends.
        """
        if not self._starts_record(last.offset):
            # one of several records in a gzip member (FastWARC gives them all the member's offset, which
            # is not theirs): its bytes cannot be found again, so it is not judged
            return last.offset + 1
        self.src.seek(last.offset)
        head, need, seen, tail = b"", None, 0, b""
        for data, member_end in _inflate(self.src) if self.gzipped else _chunks(self.src):
            if need is None:
                head += data
                i = head.find(b"\r\n\r\n")
                if i < 0:
                    if len(head) > HEAD_MAX:
                        return None
                    continue
                need, data, head = i + 4 + last.content_length, head, b""
            if len(tail) < 4 and seen + len(data) > need:
                tail += data[max(0, need - seen) :][: 4 - len(tail)]
            seen += len(data)
            if member_end is not None:  # gzip: the member ends here; it must not end inside the record
                return member_end if seen >= need and _trailer_ok(tail, seen - need) else None
            if not self.gzipped and seen >= need + 4:
                return last.offset + need + 4 if tail == b"\r\n\r\n" else None
        # the data ended (a gzip file here ends inside a member: not a record's end)
        ok = not self.gzipped and need is not None and seen >= need and _trailer_ok(tail, seen - need)
        return last.offset + seen if ok else None

    def _find_next(self, pos: int) -> int | None:
        """Offset of the first record start at or after `pos`: a gzip member inflating to `WARC/` (gzip
        files) or a `WARC/<digit>` line (plain files); None if there is none."""
        needle = GZIP_MAGIC if self.gzipped else b"\nWARC/"
        if not self.gzipped and pos > 0:
            pos -= 1  # the line end may sit just before pos
        while True:
            self.src.seek(pos)
            chunk = self.src.read(SCAN_CHUNK)
            if len(chunk) < len(needle):
                return None
            i = chunk.find(needle)
            while i >= 0:
                at = pos + i + (0 if self.gzipped else 1)
                if self._starts_record(at):
                    return at
                i = chunk.find(needle, i + 1)
            pos += len(chunk) - len(needle) + 1  # overlap: a needle may straddle two chunks

    def _starts_record(self, at: int) -> bool:
        self.src.seek(at)
        data = self.src.read(4096)
        if self.gzipped:
            try:
                data = zlib.decompressobj(31).decompress(data, 16)
            except zlib.error:
                return False
        return _WARC_LINE.match(data) is not None


def _inflate(src: _Source) -> Iterator[tuple[bytes, int | None]]:
    """Inflate the gzip member at the current position: (data, None) pieces, then (b"", offset just past
    the member) if it ends. Stops early at the end of the data or at bytes that do not inflate."""
    d, pos, chunk = zlib.decompressobj(31), src.tell(), b""
    while not d.eof:
        chunk = chunk or src.read(1 << 16)
        if not chunk:
            return
        try:
            data = d.decompress(chunk, 1 << 20)
        except zlib.error:
            return
        pos += len(chunk) - len(d.unconsumed_tail) - len(d.unused_data)
        chunk = d.unconsumed_tail
        yield data, None
    yield b"", pos


def _chunks(src: _Source) -> Iterator[tuple[bytes, None]]:
    while chunk := src.read(1 << 16):
        yield chunk, None


def _trailer_ok(tail: bytes, after: int) -> bool:
    """The bytes after a block: CRLFCRLF as the spec says, or only line ends up to the end of the data."""
    return tail == b"\r\n\r\n" or (after == len(tail) and not tail.strip(b"\r\n"))


def _sniff(src: _Source, path: str) -> bool:
    """Check the first bytes: True for gzip, False for a plain WARC; CorruptInputError otherwise."""
    head = src.read(1 << 16)
    if not head:
        raise CorruptInputError(path, "empty file")
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:
        try:
            head = zlib.decompressobj(31).decompress(head, 256)
        except zlib.error:
            return True  # a damaged first member: the records after it are searched for
    head = head.lstrip()
    if head.startswith(b"filedesc://"):
        raise CorruptInputError(
            path,
            "ARC format is not supported (pre-2013 archives): convert it to WARC first (warcio recompress)",
        )
    if not _WARC_LINE.match(head):
        what = "gzip data" if gzipped else "it"
        raise CorruptInputError(path, f"not a WARC file ({what} starts with {head[:16]!r})")
    return gzipped


def _digest_ok(digest: str | None, block: bytes) -> bool | None:
    """Check an `algo:value` digest (base32 as the spec says; base16 and base64 as some tools write).

    None when there is nothing to check or the algorithm is unknown. (FastWARC's verify_block_digest says
    False for both, and for base64, which would make every record of such a file corrupt.)
    """
    if not digest or ":" not in digest:
        return None
    algo, value = digest.split(":", 1)
    try:
        h = hashlib.new(algo.strip().lower().replace("-", ""), block).digest()
    except ValueError:
        return None
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
