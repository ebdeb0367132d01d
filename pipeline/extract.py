"""Turn one WARC response into a Document: trafilatura's main text, or a drop reason saying why not.

Steps, each able to drop: HTTP status (only 200 carries a page), content type (HTML only: PDFs and
images go), charset decoding, trafilatura main-content extraction, minimum text length. The Document
is always returned, so a dropped one can be written to excluded/ with its reason.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import trafilatura

from pipeline.documents import Document
from pipeline.warc import WarcResponse

HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_META_CHARSET_RE = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
_HTML_SNIFF_RE = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)", re.IGNORECASE | re.DOTALL
)


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
    # "auto": UTF-8 if the bytes are valid UTF-8, else the declared charset (HTTP header, then <meta>)
    # with replacement, else trafilatura's own detection; "bytes": always trafilatura's detection;
    # "header": always the declared charset (UTF-8 if none), with replacement
    charset: str = "auto"
    min_text_chars: int = 50  # shorter extractions are navigation scraps, not documents


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
    doc = Document(
        id=resp.record_id, text="", url=resp.url, date=resp.date, warc_file=warc_file, metadata=meta
    )

    if resp.status is None:
        return doc, "not_http"
    if resp.status != 200:
        return doc, f"http_status_{resp.status}"  # redirects, errors: no page content of their own
    if not resp.body.strip():
        return doc, "empty_body"
    if not is_html(resp.content_type, resp.body):
        return doc, "not_html"

    html, charset = decode_html(resp.body, resp.content_type, cfg.charset)
    meta["charset"] = charset
    text = trafilatura.extract(
        html,
        url=resp.url or None,
        output_format="txt",
        fast=cfg.fast,
        favor_precision=cfg.favor_precision,
        favor_recall=cfg.favor_recall,
        include_comments=cfg.include_comments,
        include_tables=cfg.include_tables,
        include_images=False,
        include_links=False,
        deduplicate=cfg.deduplicate,
        with_metadata=False,
    )
    doc.text = (text or "").strip()
    meta["text_chars"] = len(doc.text)
    if len(doc.text) < cfg.min_text_chars:
        return doc, "no_main_text"
    return doc, None


def is_html(content_type: str, body: bytes) -> bool:
    """HTML by its declared type; an undeclared type is sniffed from the first bytes."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if body[:5] == b"%PDF-":
        return False  # servers label PDFs text/html surprisingly often
    if mime:
        return mime in HTML_TYPES
    return _HTML_SNIFF_RE.match(body[:2048]) is not None


def decode_html(body: bytes, content_type: str, mode: str = "auto") -> tuple[str | bytes, str]:
    """The HTML to hand to trafilatura and the charset used ("detect" when left to trafilatura)."""
    if mode == "bytes":
        return body, "detect"
    if mode == "auto":
        try:
            return body.decode("utf-8"), "utf-8"  # valid UTF-8 is UTF-8, whatever the header claims
        except UnicodeDecodeError:
            pass
    declared = declared_charset(content_type, body)
    if declared:
        return body.decode(declared, errors="replace"), declared
    if mode == "header":
        return body.decode("utf-8", errors="replace"), "utf-8"
    return body, "detect"


def declared_charset(content_type: str, body: bytes) -> str | None:
    """The charset named by the HTTP header or else a <meta> tag, if Python knows it."""
    m = _CHARSET_RE.search(content_type)
    candidates = [m.group(1)] if m else []
    mm = _META_CHARSET_RE.search(body[:4096])
    if mm:
        candidates.append(mm.group(1).decode("ascii", "replace"))
    for name in candidates:
        try:
            return codecs.lookup(name).name
        except LookupError:
            continue
    return None


_WORD_RE = re.compile(r"\w+")


def word_f1(predicted: str, truth: str) -> float:
    """Word-level F1 (bag of lowercased words) of an extraction against the true main content."""
    from collections import Counter

    pred, true = Counter(_WORD_RE.findall(predicted.lower())), Counter(_WORD_RE.findall(truth.lower()))
    if not pred or not true:
        return float(not pred and not true)
    overlap = sum((pred & true).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(true.values())
    return 2 * precision * recall / (precision + recall)
