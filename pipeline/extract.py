"""Turn the records of one WARC (or WET) file into Documents: trafilatura's main text, or a drop reason.

`extract_warc` is what a stage task calls: every response record (and every WET conversion record) becomes
one Document, kept or dropped with its reason; damage in the file is counted and reported, never raised.
A response goes through steps that can each drop it, the drop reason in brackets:
  the record (corrupt_record, record_too_large) -> HTTP (bad_http_response, not_http, http_status_<N>,
  payload_too_large, bad_content_encoding, empty_body, not_html) -> charset (undecodable_text) ->
  trafilatura within a time limit (extraction_timeout, extraction_error) -> length (no_main_text).
A WET conversion record's payload is its text: only corrupt_record, record_too_large, undecodable_text
and no_main_text apply. The counters are warc.py's (warc_records*, corrupt_records, warc_resyncs,
bytes_skipped, files_cut_short, digest_mismatch, records_without_id), corrupt_files, docs_in, docs_out and
text_chars_out.
"""

from __future__ import annotations

import codecs
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trafilatura
from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5
from resiliparse.process_guard import ExecutionTimeout, InterruptType, time_guard

from pipeline.documents import Document, DocumentSink
from pipeline.warc import CorruptInputError, WarcRecord, WarcResponse, iter_warc_records
from pipeline.warc_http import http_response

HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_META_CHARSET_RE = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_HTML_SNIFF_RE = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)", re.IGNORECASE | re.DOTALL
)
# files servers like to label text/html: PDF, gzip (compressed twice), PNG, JPEG, GIF, ZIP
_BINARY_MAGIC = (b"%PDF-", b"\x1f\x8b", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04")
# control characters no text has (tab, line ends and form feed excepted): a decoding that yields more than
# one in a thousand characters of them read the bytes wrong; fewer are stray bytes, removed
_JUNK_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NOT_TEXT_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")  # and U+FFFD: never in kept text


@dataclass(frozen=True)
class ExtractConfig:
    """trafilatura options and our own gates.

    Word F1 on the 1,358 WCXB dev pages (bench/extract_quality.py; trafilatura defaults: 0.817):
    these defaults 0.824; with comments 0.820; without tables 0.816; favor_precision 0.759;
    favor_recall 0.803; fast 0.791 (but 1.5x the pages/s).
    """

    include_comments: bool = False  # user comments are not the page's main text
    include_tables: bool = True  # tables hold real content on many pages: dropping them costs F1
    favor_precision: bool = False  # drops whole sections of real text: -0.065 F1
    favor_recall: bool = False
    fast: bool = False  # True skips trafilatura's fallback extractors: 1.5x faster, -0.033 F1
    deduplicate: bool = False  # per-document paragraph dedup; corpus dedup is pipeline/dedup.py's job
    min_text_chars: int = 50  # shorter extractions are navigation scraps, not documents
    # A record (and an HTTP payload once decoded) larger than this is dropped unread ("record_too_large",
    # "payload_too_large"): it bounds a worker's memory (block + payload + lxml tree, about 10x the HTML).
    # 16 MiB is 16x Common Crawl's own 1 MiB payload truncation and below the 20 MB trafilatura refuses
    # anyway, so no page it could extract is lost.
    max_record_bytes: int = 16 << 20
    # Seconds trafilatura may spend on one page ("extraction_timeout"); 0 disables the limit. The slowest
    # of the 1,358 WCXB dev pages took 1.3 s on a busy 2-core machine (median 0.04 s); pathological pages
    # (tens of thousands of links) take minutes and would stall a worker.
    time_limit_s: float = 5.0
    verify_digests: bool = True  # a record whose WARC-Block-Digest does not match is corrupt, not extracted

    def __post_init__(self) -> None:
        if self.max_record_bytes <= 0 or self.time_limit_s < 0 or self.min_text_chars < 0:
            raise ValueError("max_record_bytes must be > 0, time_limit_s and min_text_chars >= 0")


def extract_warc(url: str, sink: DocumentSink, cfg: ExtractConfig) -> None:
    """Every response and conversion record of the WARC/WET file `url` (local or any fsspec URL) to `sink`.

    Never raises for bad input: a file that is no WARC counts in `corrupt_files`, a damaged record in
    `corrupt_records` (both with a `stats.error` naming file and offset), a page that fails extraction is
    dropped with its reason. Errors of the storage itself (network, permissions) are raised: a retry may
    succeed where a committed partial output would hide the loss.
    """
    stats = sink.stats
    try:
        for rec in iter_warc_records(
            url, stats, max_record_bytes=cfg.max_record_bytes, verify_digests=cfg.verify_digests
        ):
            stats.add("docs_in")
            try:
                doc, reason = record_document(rec, url, cfg)
            except Exception as e:  # a library failing on some input costs that record, not the file
                doc, reason = _bare_document(rec, url), "extraction_error"
                stats.error(f"{url}@{rec.offset}: extraction failed ({type(e).__name__}: {e})")
            if reason is None:
                stats.add("text_chars_out", len(doc.text))
                sink.keep(doc)
            else:
                sink.drop(doc, reason)
    except CorruptInputError as e:
        stats.add("corrupt_files")
        stats.error(str(e))


def record_document(rec: WarcRecord, warc_file: str, cfg: ExtractConfig) -> tuple[Document, str | None]:
    """The Document of one response or conversion record and None if kept, else a drop reason."""
    if rec.problem:  # "corrupt_record", "record_too_large": the block was not read
        return _bare_document(rec, warc_file), rec.problem
    if rec.record_type == "conversion":
        return wet_document(rec, warc_file, cfg)
    return extract_document(http_response(rec, cfg.max_record_bytes), warc_file, cfg)


def wet_document(rec: WarcRecord, warc_file: str, cfg: ExtractConfig) -> tuple[Document, str | None]:
    """A WET conversion record: its payload is the text (Common Crawl's own extraction), UTF-8."""
    block = rec.block or b""
    meta: dict = {"content_type": rec.content_type, "warc_offset": rec.offset, "text_bytes": len(block)}
    if lang := rec.headers.get("WARC-Identified-Content-Language"):
        meta["warc_language"] = lang  # Common Crawl's guess; the filter stage writes its own "language"
    doc = _document(rec.record_id, rec.url, rec.date, warc_file, meta)
    text = _decode_as(block, "utf-8")
    if text is None:
        return doc, "undecodable_text"
    doc.text = _text_only(text).strip()
    meta["text_chars"] = len(doc.text)
    return doc, None if len(doc.text) >= cfg.min_text_chars else "no_main_text"


def extract_document(
    resp: WarcResponse, warc_file: str, cfg: ExtractConfig | None = None
) -> tuple[Document, str | None]:
    """The Document for `resp` and None if kept, or the Document (text possibly "") and a drop reason."""
    cfg = cfg or ExtractConfig()
    meta: dict = {
        "content_type": resp.content_type,
        "http_status": resp.status,
        "html_bytes": len(resp.body),
        "warc_offset": resp.offset,
    }
    if resp.truncated:
        meta["warc_truncated"] = resp.truncated  # the crawler cut the payload: the page may be incomplete
    doc = _document(resp.record_id, resp.url, resp.date, warc_file, meta)

    if resp.problem:
        return doc, resp.problem  # "bad_http_response", "payload_too_large", "bad_content_encoding"
    if resp.status is None:
        return doc, "not_http"
    if resp.status != 200:
        return doc, f"http_status_{resp.status}"  # redirects, errors: no page content of their own
    if not resp.body or resp.body.isspace():
        return doc, "empty_body"
    if not is_html(resp.content_type, resp.body):
        return doc, "not_html"
    html, charset = decode_html(resp.body, resp.content_type)
    if html is None:
        return doc, "undecodable_text"
    meta["charset"] = charset
    try:
        with time_limit(cfg.time_limit_s):
            text = _trafilatura(html, resp.url, cfg)
    except ExecutionTimeout:
        meta["time_limit_s"] = cfg.time_limit_s
        return doc, "extraction_timeout"
    doc.text = _text_only(text or "").strip()
    meta["text_chars"] = len(doc.text)
    if len(doc.text) < cfg.min_text_chars:
        return doc, "no_main_text"
    return doc, None


def trafilatura_options(cfg: ExtractConfig) -> dict:
    """The keyword arguments of trafilatura.extract for this config (plain text, no links or images)."""
    return {
        "output_format": "txt",
        "fast": cfg.fast,
        "favor_precision": cfg.favor_precision,
        "favor_recall": cfg.favor_recall,
        "include_comments": cfg.include_comments,
        "include_tables": cfg.include_tables,
        "include_images": False,
        "include_links": False,
        "deduplicate": cfg.deduplicate,
        "with_metadata": False,
    }


def _trafilatura(html: str, url: str, cfg: ExtractConfig) -> str | None:
    return trafilatura.extract(html, url=url or None, **trafilatura_options(cfg))


def _document(record_id: str, url: str, date: str, warc_file: str, meta: dict) -> Document:
    return Document(id=record_id, text="", url=url, date=date, warc_file=warc_file, metadata=meta)


def _bare_document(rec: WarcRecord, warc_file: str) -> Document:
    """The Document of a record dropped before its content was looked at."""
    meta = {"warc_offset": rec.offset, "record_type": rec.record_type, "content_length": rec.content_length}
    return _document(rec.record_id, rec.url, rec.date, warc_file, meta)


def _text_only(text: str) -> str:
    """Text without NUL, other control characters and U+FFFD (a page's own mojibake, never ours)."""
    return _NOT_TEXT_RE.sub("", text) if _NOT_TEXT_RE.search(text) else text


# --- time limit ---------------------------------------------------------------------------------------------


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise resiliparse's ExecutionTimeout (a BaseException: no `except Exception` in a library swallows
    it) in this thread once `seconds` have passed; 0 means no limit.

    On the main thread (a Ray task's, the CLI's) a SIGALRM interval timer does it: two system calls per
    page. Other threads cannot take signals: there resiliparse's time_guard throws the exception in from a
    watchdog thread, at about 1.5 ms per page to start and stop it. Either interrupts Python code only:
    a single long call inside lxml finishes first.
    """
    if seconds <= 0:
        yield
    elif (
        threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    ):
        armed = True

        def on_alarm(signum, frame):
            if armed:  # a signal already on its way when the timer was cleared does nothing
                raise ExecutionTimeout(f"took longer than {seconds} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    else:
        ms = max(1, int(seconds * 1000))
        with time_guard(
            timeout_ms=ms, grace_period_ms=ms, interrupt_type=InterruptType.exception, check_interval=10
        ):
            yield


# --- content type and charset -------------------------------------------------------------------------------


def is_html(content_type: str, body: bytes) -> bool:
    """HTML by its declared type; an undeclared type is sniffed from the first bytes."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if body[:1024].lstrip().startswith(_BINARY_MAGIC):
        return False  # servers label PDFs, images and gzip files text/html surprisingly often
    if mime:
        return mime in HTML_TYPES
    return _HTML_SNIFF_RE.match(body[:2048]) is not None


def decode_html(body: bytes, content_type: str) -> tuple[str | None, str]:
    """The page as text and the charset that decoded it cleanly; (None, "") if none did.

    Tried in order: a UTF-16 byte-order mark; UTF-8 (valid UTF-8 is UTF-8, whatever the header says: it
    almost never happens by chance); "mostly UTF-8" (a few stray bytes among real UTF-8 characters are
    dropped, charset "utf-8-lossy"); the charsets the HTTP header and the <meta> tag declare, mapped the
    WHATWG way (unknown and non-text labels such as base64 ignored, UTF-16 labels on ASCII-compatible
    bytes meaning UTF-8); resiliparse's detection. Each must decode strictly: no U+FFFD is ever made.
    """
    for charset in _charsets(body, content_type):
        text = _decode_as(body, charset)
        if text is not None:
            return text, charset
    return None, ""


def _charsets(body: bytes, content_type: str) -> Iterator[str]:
    declared = [c for c in (_whatwg(label, body) for label in declared_charsets(content_type, body)) if c]
    tried: set[str] = set()
    candidates = [
        "utf-16" if body[:2] in (b"\xff\xfe", b"\xfe\xff") else "",
        *[c for c in declared if c.startswith("iso2022")],  # 7-bit encodings are valid UTF-8 too: first
        "utf-8",
        "utf-8-lossy",
        *declared,
    ]
    for charset in candidates:
        if charset and charset not in tried:
            tried.add(charset)
            yield charset
    detected = detect_encoding(body)
    if detected and detected not in tried:
        yield detected


def declared_charsets(content_type: str, body: bytes) -> list[str]:
    """The charset labels of the HTTP header and of a <meta> tag, as written."""
    labels = [m.group(1)] if (m := _CHARSET_RE.search(content_type)) else []
    if mm := _META_CHARSET_RE.search(body[:4096]):
        labels.append(mm.group(1).decode("ascii", "replace"))
    return labels


def _whatwg(label: str, body: bytes) -> str | None:
    """Python codec for a charset label per WHATWG; None for labels that name no text encoding."""
    name = map_encoding_to_html5(label, fallback_utf8=False)
    if name and name.startswith("utf-16") and b"\x00" not in body[:1024]:
        return "utf-8"  # a UTF-16 label on ASCII-compatible bytes (the label itself was readable)
    return name


def _decode_as(body: bytes, charset: str) -> str | None:
    """`body` decoded strictly, stray control characters removed; None if it does not decode cleanly."""
    try:
        if charset == "utf-8":
            # an incomplete character at the very end is the crawler's truncation, not a wrong charset
            text = codecs.getincrementaldecoder("utf-8")().decode(body.removeprefix(codecs.BOM_UTF8))
        elif charset == "utf-8-lossy":
            text = _mostly_utf8(body)
        else:
            text = body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None
    if text is None:
        return None
    if _JUNK_RE.search(text):
        if len(_JUNK_RE.findall(text)) * 1000 > len(text):
            return None  # binary, or a multi-byte encoding read as another
        text = _JUNK_RE.sub("", text)
    return text


def _mostly_utf8(body: bytes) -> str | None:
    """UTF-8 with its few invalid bytes dropped, if there are at least as many real UTF-8 characters and at
    most one invalid byte per thousand (a cp1252 page has no valid multi-byte sequences; a cp1251 page is
    all invalid)."""
    lossy = body.decode("utf-8", "replace")
    replaced = lossy.count("\ufffd")
    bad = replaced - body.count("\ufffd".encode())  # U+FFFD the page itself holds are not errors
    multibyte = len(lossy) - len(lossy.encode("ascii", "ignore")) - replaced
    if bad > max(1, len(body) // 1000) or multibyte < bad:
        return None
    return body.decode("utf-8", "ignore")


_WORD_RE = re.compile(r"\w+")


def word_f1(predicted: str, truth: str) -> float:
    """Word-level F1 (bag of lowercased words) of an extraction against the true main content."""
    pred, true = Counter(_WORD_RE.findall(predicted.lower())), Counter(_WORD_RE.findall(truth.lower()))
    if not pred or not true:
        return float(not pred and not true)
    overlap = sum((pred & true).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(true.values())
    return 2 * precision * recall / (precision + recall)
