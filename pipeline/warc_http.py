"""Split the HTTP block of a WARC response record into status, Content-Type and decoded payload.

Common Crawl stores payloads already decoded (it renames the headers to X-Crawler-*), but wget, warcio
and Heritrix archives keep chunked transfer encoding and gzip/deflate/brotli content encoding: undo them
here, leniently (a broken encoding keeps the bytes it could decode and says what went wrong).
"""

from __future__ import annotations

import io
import zlib

MAX_DECODED_BYTES = 64 << 20  # a decompression bomb stops here


def parse_http_response(block: bytes) -> tuple[int | None, str, bytes, str] | None:
    """(status, content_type, payload, problem) of an HTTP response block; None if it has no status line.

    `problem` is "" when the payload decoded cleanly, else a short description.
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
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()  # repeated header: the last one wins
    problem = ""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, problem = _dechunk(body)
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding not in ("identity", "none") and body:
        decoded, why = _decode_content(body, encoding)
        body, problem = decoded, problem or why
    return status, headers.get("content-type", ""), body, problem


def _dechunk(body: bytes) -> tuple[bytes, str]:
    out, pos = [], 0
    while pos < len(body):
        eol = body.find(b"\n", pos)
        if eol < 0:
            break
        size_field = body[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            # not chunked after all (servers lie): keep the raw payload
            return (body, "") if not out else (b"".join(out), "bad chunk size line")
        if size == 0:
            return b"".join(out), ""
        out.append(body[eol + 1 : eol + 1 + size])
        pos = eol + 1 + size
        pos += 2 if body[pos : pos + 2] == b"\r\n" else (1 if body[pos : pos + 1] == b"\n" else 0)
    return b"".join(out), "chunked payload ends without its last chunk"


def _decode_content(body: bytes, encoding: str) -> tuple[bytes, str]:
    if encoding in ("gzip", "x-gzip", "deflate"):
        # gzip header, zlib header, or raw deflate (some servers send raw deflate as "deflate")
        for wbits in (47, -15):  # 47 = 32 + 15: autodetect gzip or zlib
            d = zlib.decompressobj(wbits)
            try:
                out = d.decompress(body, MAX_DECODED_BYTES)
            except zlib.error:
                continue
            return out, "" if d.eof else f"{encoding} payload is truncated or too large"
        return body, f"{encoding} payload does not decompress"
    if encoding == "br":
        from fastwarc.stream_io import BrotliReader

        try:
            return BrotliReader(io.BytesIO(body)).read(MAX_DECODED_BYTES), ""
        except OSError as e:
            return body, f"br payload does not decompress ({e})"
    return body, f"unsupported Content-Encoding {encoding!r}"
