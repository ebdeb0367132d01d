"""Split the HTTP block of a WARC response record into status, Content-Type and decoded payload.

Common Crawl stores payloads already decoded (it renames the headers to X-Crawler-*), but wget, warcio
and Heritrix archives keep chunked transfer encoding and gzip/deflate/brotli/zstd content encoding: undo
them here, leniently, on the record's bytes. FastWARC's own parse_http(auto_decode=...) is not used: an
unsupported or lying Content-Encoding (x-gzip, raw deflate, "gzip" over plain HTML), a lying chunked
encoding or bare-LF header lines make it fail or lose the body, and its decoding errors break the
iteration over the rest of the file. Here a broken encoding keeps what can be used and says what went wrong.
"""

from __future__ import annotations

import io
import zlib

from pipeline.warc import WarcRecord, WarcResponse

MAX_DECODED_BYTES = 16 << 20  # default cap of a decoded payload: a decompression bomb stops here


def http_response(rec: WarcRecord, max_bytes: int = MAX_DECODED_BYTES) -> WarcResponse:
    """The WarcResponse of a usable response record (non-HTTP ones, dns: say, keep their block as body)."""
    block = rec.block or b""
    status, content_type, body, problem = None, rec.content_type, block, ""
    if rec.url.startswith(("http:", "https:")) or block.startswith(b"HTTP/"):
        http = parse_http_response(block, max_bytes)
        if http is None:
            body, problem = b"", "bad_http_response"
        else:
            status, content_type, body, problem = http
    return WarcResponse(
        record_id=rec.record_id,
        url=rec.url,
        date=rec.date,
        status=status,
        content_type=content_type,
        body=body,
        offset=rec.offset,
        truncated=rec.truncated,
        problem=problem,
    )


def parse_http_response(
    block: bytes, max_bytes: int = MAX_DECODED_BYTES
) -> tuple[int | None, str, bytes, str] | None:
    """(status, content_type, payload, problem) of an HTTP response block; None if it has no status line.

    `problem` is "" when the payload is usable, "payload_too_large" when it decodes to more than `max_bytes`
    (the payload is then b""), "bad_content_encoding" when it does not decode and is not markup either.
    """
    if not block.startswith(b"HTTP/"):
        return None
    # header block ends at the first empty line; some servers (and old crawlers) use bare LF
    crlf, lf = block.find(b"\r\n\r\n"), block.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        head, body = block[:crlf], block[crlf + 4 :]
    elif lf >= 0:
        head, body = block[:lf], block[lf + 2 :]
    else:
        head, body = block, b""  # headers only (e.g. a 301 without body)
    lines = head.decode("iso-8859-1").splitlines()
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None  # "HTTP/1.1 2OO OK", "HTTP/1.1" alone: not a status line
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()  # repeated header: the last one wins
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c not in ("identity", "none")]
    problem = ""
    for coding in reversed(codings):  # applied in the order listed: undone from the last
        if problem or not body:
            break
        body, problem = _decode_content(body, coding, max_bytes)
    if len(body) > max_bytes:
        body, problem = b"", "payload_too_large"
    return status, headers.get("content-type", ""), body, problem


def _dechunk(body: bytes) -> bytes:
    """Undo chunked transfer encoding; a body that is not chunked after all (servers lie) is kept as is,
    and one that ends without its last chunk keeps the chunks it has."""
    out, pos = [], 0
    while pos < len(body):
        eol = body.find(b"\n", pos)
        try:
            size = int(body[pos:eol].split(b";", 1)[0].strip(), 16) if eol >= 0 else -1
        except ValueError:
            size = -1
        if size < 0:  # no chunk size line here
            return b"".join(out) if out else body
        if size == 0:
            break
        out.append(body[eol + 1 : eol + 1 + size])
        pos = eol + 1 + size
        pos += 2 if body[pos : pos + 2] == b"\r\n" else (1 if body[pos : pos + 1] == b"\n" else 0)
    return b"".join(out)


def _decode_content(body: bytes, coding: str, max_bytes: int) -> tuple[bytes, str]:
    """(decoded, problem): at most max_bytes + 1 bytes are ever inflated."""
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            # gzip header, zlib header, or raw deflate (some servers send raw deflate as "deflate")
            for wbits in (47, -15):  # 47 = 32 + 15: autodetect gzip or zlib
                try:
                    # a truncated stream (the crawler cut the payload) keeps what it inflates to
                    return zlib.decompressobj(wbits).decompress(body, max_bytes + 1), ""
                except zlib.error:
                    continue
            raise OSError(f"{coding} data does not inflate")
        if coding in ("br", "zstd"):
            from fastwarc.stream_io import BrotliReader, ZstdReader

            reader = BrotliReader if coding == "br" else ZstdReader
            return reader(io.BytesIO(body)).read(max_bytes + 1), ""
        raise OSError(f"unsupported Content-Encoding {coding!r}")
    except OSError:
        # the server lied about the encoding: markup is kept as it is, anything else is unusable
        return (body, "") if body[:1024].lstrip()[:1] == b"<" else (b"", "bad_content_encoding")
