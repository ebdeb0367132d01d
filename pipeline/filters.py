"""Document filters: each `check(doc)` returns None to keep or the drop reason, and records its scores.

- LanguageFilter: py3langid (its model ships inside the wheel: nothing is downloaded), normalised
  probabilities, so `min_score` is a real probability.
- QualityFilter: datatrove's own GopherQualityFilter and GopherRepetitionFilter, fed a regex word
  tokenizer instead of datatrove's default English one (which needs spaCy, not installed here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from datatrove.data import Document as DatatroveDocument
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer

from pipeline.documents import Document

LANGID_MAX_CHARS = 100_000  # the first 100k characters decide the language: a 1 MB page costs 50 ms otherwise


class Filter(Protocol):
    name: str

    def check(self, doc: Document) -> str | None: ...


@dataclass(frozen=True)
class FilterConfig:
    languages: tuple[str, ...] = ("en",)  # ISO 639-1 codes py3langid knows; empty: keep every language
    min_language_score: float = 0.65
    gopher_quality: bool = True
    gopher_repetition: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    # any other GopherQualityFilter / GopherRepetitionFilter argument, passed through unchanged
    gopher_quality_args: dict[str, Any] = field(default_factory=dict)
    gopher_repetition_args: dict[str, Any] = field(default_factory=dict)


def build_filters(cfg: FilterConfig | None = None) -> list[Filter]:
    """The filters in the order to run them: language first (cheap, drops most of a CC crawl)."""
    cfg = cfg or FilterConfig()
    filters: list[Filter] = []
    if cfg.languages:
        filters.append(LanguageFilter(cfg.languages, cfg.min_language_score))
    if cfg.gopher_quality or cfg.gopher_repetition:
        quality = {
            "min_doc_words": cfg.min_doc_words,
            "max_doc_words": cfg.max_doc_words,
        } | cfg.gopher_quality_args
        repetition = dict(cfg.gopher_repetition_args)
        filters.append(
            QualityFilter(
                quality=quality if cfg.gopher_quality else None,
                repetition=repetition if cfg.gopher_repetition else None,
            )
        )
    return filters


def first_failure(filters: list[Filter], doc: Document) -> str | None:
    """Run the filters in order; the first drop reason, or None when every filter keeps the document."""
    for f in filters:
        reason = f.check(doc)
        if reason is not None:
            return reason
    return None


# --- language ---------------------------------------------------------------------------------------------


@cache
def _language_identifier():
    # loaded once per process (~1 s); normalised probabilities make min_score meaningful
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter:
    name = "language"

    def __init__(self, languages: tuple[str, ...] = ("en",), min_score: float = 0.65):
        self.languages = frozenset(languages)
        self.min_score = min_score

    def check(self, doc: Document) -> str | None:
        text = doc.text[:LANGID_MAX_CHARS]
        if not text.strip():
            doc.metadata["language"], doc.metadata["language_score"] = None, 0.0
            return "language_empty_text"
        lang, score = _language_identifier().classify(text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(float(score), 4)
        if self.languages and lang not in self.languages:
            return f"language_{lang}"
        if score < self.min_score:
            return f"language_score_below_{self.min_score}"
        return None


# --- Gopher quality and repetition ------------------------------------------------------------------------

# Words as the Gopher paper counts them: whitespace-separated, punctuation stripped from the edges
# ("end." -> "end", "(3.5)" -> "3.5"; a lone "-" or "|" is no word). Splitting punctuation into tokens of
# its own, as spaCy does, makes every comma a "word without a letter": on the 1,344 WCXB dev pages the
# alpha-words rule then drops 305 hand-reviewed pages (terms of service, docs with code) against 9 here.
_EDGE_PUNCTUATION = "".join(sorted(PUNCTUATION_SET))
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_SENT_END_RE = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s)|\n+")


class RegexWordTokenizer(WordTokenizer):
    """A spaCy-free word and sentence tokenizer for datatrove's filters (scripts that separate words)."""

    def __init__(self, language: str | None = "en"):
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return [w for w in (t.strip(_EDGE_PUNCTUATION) for t in text.split()) if w]

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b] for a, b in self.span_tokenize(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for m in _SENT_END_RE.finditer(text):
            end = m.end() if m.group().strip() else m.start()  # keep the full stop, not the newline
            if text[start:end].strip():
                spans.append(_strip_span(text, start, end))
            start = m.end()
        if text[start:].strip():
            spans.append(_strip_span(text, start, len(text)))
        return spans


def _strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


class QualityFilter:
    """datatrove's Gopher quality then repetition rules; their reason strings become ours."""

    name = "gopher"

    def __init__(self, quality: dict[str, Any] | None = None, repetition: dict[str, Any] | None = None):
        self.tokenizer = RegexWordTokenizer()
        # both filters split the same text with the same tokenizer instance: datatrove's lru_cache on
        # split_into_words then tokenizes each document once
        self.quality = (
            GopherQualityFilter(**quality, language=self.tokenizer) if quality is not None else None
        )
        self.repetition = (
            GopherRepetitionFilter(**repetition, language=self.tokenizer) if repetition is not None else None
        )

    def check(self, doc: Document) -> str | None:
        dt_doc = DatatroveDocument(text=doc.text, id=doc.id)
        doc.metadata.update(self.scores(doc.text))
        if self.quality is not None:
            reason = _reason(self.quality.filter(dt_doc), "gopher_quality")
            if reason:
                return reason
        if self.repetition is not None:
            reason = _reason(self.repetition.filter(dt_doc), "gopher_repetition")
            if reason:
                # datatrove's repetition reasons ("dup_line_frac", "top_2_gram") do not name the filter
                return reason if reason.startswith("gopher") else f"gopher_repetition_{reason}"
        return None

    def scores(self, text: str) -> dict[str, float | int]:
        """The headline numbers the Gopher rules judge, kept in metadata to tune thresholds later."""
        words = split_into_words(text, self.tokenizer)  # lru-cached: the filters reuse this split
        content = [w for w in words if any(c not in PUNCTUATION_SET for c in w)]  # as Gopher counts them
        alpha = sum(1 for w in words if _HAS_ALPHA.search(w))
        lines = [line for line in text.splitlines() if line.strip()]
        return {
            "words": len(content),
            "mean_word_length": round(sum(map(len, content)) / len(content), 3) if content else 0.0,
            "alpha_words_ratio": round(alpha / len(words), 4) if words else 0.0,
            "dup_line_ratio": round(1 - len(set(lines)) / len(lines), 4) if lines else 0.0,
        }


def _reason(result: bool | tuple[bool, str], default: str) -> str | None:
    if isinstance(result, tuple):
        return None if result[0] else (result[1] or default)
    return None if result else default
