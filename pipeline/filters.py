"""The filter stage's steps, FineWeb's sequence by default, and the chain that runs them on one document.

    unicode repair (ftfy) -> url -> language -> gopher_repetition -> gopher_quality -> c4 -> fineweb_quality
    -> badwords -> decontamination                  then, on kept documents only: PII redaction

Each step can be configured and switched off in TOML (`[filter.<step>]`). A step judges a document and
returns None to keep it or the reason it goes, "step.score" (e.g. "gopher_quality.mean_word_length"),
having written what it measured into `metadata.filter.<step>` (language: `metadata.language`,
`language_score`; PII: `metadata.pii`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
import ftfy
from ftfy.badness import MOJIBAKE_CATEGORIES
from ftfy.chardata import CONTROL_CHARS, HTML_ENTITY_RE

from pipeline.config import UsageError
from pipeline.decontaminate import DecontamConfig, Decontaminator
from pipeline.documents import Document
from pipeline.language import LanguageConfig, LanguageFilter
from pipeline.pii import PIIConfig, PIIRedactor
from pipeline.quality import (
    C4Config,
    C4Quality,
    FineWebQuality,
    FineWebQualityConfig,
    GopherQuality,
    GopherQualityConfig,
    GopherRepetition,
    GopherRepetitionConfig,
)
from pipeline.url_filter import URLFilterConfig, url_filter
from pipeline.words import Text

BADWORDS_DIR = Path(__file__).parent / "assets" / "ldnoobw"
UNSPACED_LANGUAGES = frozenset({"ja", "th", "zh", "lo", "km", "my"})  # bad words match without word bounds


@dataclass(frozen=True)
class BadWordsConfig:
    enabled: bool = True
    # language -> list file (one word or phrase a line); en, de, es, fr ship with tokenmill (LDNOOBW)
    lists: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterConfig:
    unicode_repair: bool = True  # ftfy, repairs only (mojibake, HTML entities, control characters)
    url: URLFilterConfig = URLFilterConfig()
    language: LanguageConfig = LanguageConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    c4: C4Config = C4Config()
    fineweb_quality: FineWebQualityConfig = FineWebQualityConfig()
    badwords: BadWordsConfig = BadWordsConfig()
    decontamination: DecontamConfig = DecontamConfig()
    pii: PIIConfig = PIIConfig()


# --- unicode repair -----------------------------------------------------------------------------------------

# datatrove's FTFYFormatter settings: fix what is broken (mojibake, entities, control characters), do not
# normalise what is merely unusual (curly quotes, full-width forms, ligatures, line breaks)
_FTFY = ftfy.TextFixerConfig(
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    normalization=None,
)
# ftfy only re-decodes text its mojibake detector flags, and every pattern of that detector needs one of
# these characters; with none of them, no entity and no control character, ftfy returns the text as is.
# Checking first saves ~2 ms a page: the detector itself is the slow part.
_MOJIBAKE_CHARS = "".join(
    MOJIBAKE_CATEGORIES[k]
    for k in ("c1", "bad", "lower_accented", "upper_accented", "box", "currency", "numeric", "law", "kaomoji")
)
_CONTROLS = "".join(re.escape(chr(c)) for c in CONTROL_CHARS)
_REPAIR_CHARS = re.compile(f"[{_MOJIBAKE_CHARS}{_CONTROLS}ŒœØÙ×√≈‚ĀāВГРСвΒΓΞΟβ°\x1b\ud800-\udfff]")


def _may_need_repair(text: str) -> bool:
    # one character class scans at C speed; the entity pattern only where there is an "&"
    return bool(_REPAIR_CHARS.search(text)) or ("&" in text and bool(HTML_ENTITY_RE.search(text)))


_FTFY_NO_HTML = _FTFY._replace(unescape_html=False)
_AFTER_NEWLINE = re.compile(r"(?<=\n)")


def repair_unicode(text: str) -> str:
    """ftfy.fix_text with these settings, same result: it fixes a text line by line, so only the lines
    that may need it are given to ftfy (it stops unescaping HTML entities after a line with a "<")."""
    if not _may_need_repair(text):
        return text
    out, config = [], _FTFY
    for line in (s for s in _AFTER_NEWLINE.split(text) if s):  # ftfy's own segments: cut after each "\n"
        if config is _FTFY and "<" in line:
            config = _FTFY_NO_HTML
        out.append(ftfy.fix_and_explain(line, config)[0] if _may_need_repair(line) else line)
    return "".join(out)


# --- bad words ----------------------------------------------------------------------------------------------


class BadWordsFilter:
    """C4's bad-word rule per language: LDNOOBW lists, matched as whole words (anywhere in unspaced
    scripts), on lowercased text; a language without a list is skipped and recorded."""

    name = "badwords"

    def __init__(self, cfg: BadWordsConfig = BadWordsConfig()) -> None:
        self.files = {p.stem: str(p) for p in BADWORDS_DIR.glob("*.txt")} | dict(cfg.lists)
        self._automata: dict[str, ahocorasick.Automaton] = {}

    def _automaton(self, language: str) -> ahocorasick.Automaton | None:
        if language not in self._automata:
            path = self.files.get(language)
            if path is None:
                return None
            if not os.path.isfile(path):
                raise UsageError(f"[filter.badwords] no such list for {language}: {path}")
            automaton = ahocorasick.Automaton()
            with open(path, encoding="utf-8") as f:
                for word in {line.strip().lower() for line in f if line.strip()}:
                    automaton.add_word(word, word)
            automaton.make_automaton()
            self._automata[language] = automaton
        return self._automata[language]

    def check(self, text: str, language: str | None, scores: dict) -> str | None:
        language = language or "en"
        automaton = self._automaton(language)
        if automaton is None:
            scores.setdefault("skipped", []).append(f"{self.name}:no list for {language}")
            return None
        lower = text.lower()
        bounded = language not in UNSPACED_LANGUAGES
        for end, word in automaton.iter(lower):
            start = end - len(word) + 1
            if bounded and (
                (start > 0 and _is_word_char(lower[start - 1]))
                or (end + 1 < len(lower) and _is_word_char(lower[end + 1]))
            ):
                continue
            scores["badwords"] = {"word": word, "language": language}
            return "badwords.word"
        return None


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


# --- the chain ----------------------------------------------------------------------------------------------

STEPS = (
    "url",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb_quality",
    "badwords",
    "decontamination",
)


class FilterChain:
    """The configured steps. Built per task; what is slow to build (the URL lists, the language model)
    is built once per process."""

    def __init__(self, cfg: FilterConfig = FilterConfig()) -> None:
        self.cfg = cfg
        self.url = url_filter(cfg.url) if cfg.url.enabled else None
        self.language = LanguageFilter(cfg.language) if cfg.language.enabled else None
        rules = [
            (cfg.gopher_repetition, GopherRepetition),
            (cfg.gopher_quality, GopherQuality),
            (cfg.c4, C4Quality),
            (cfg.fineweb_quality, FineWebQuality),
        ]
        self.rules = [make(rule_cfg) for rule_cfg, make in rules if rule_cfg.enabled]
        self.badwords = BadWordsFilter(cfg.badwords) if cfg.badwords.enabled else None
        self.decontaminator = (
            Decontaminator.from_config(cfg.decontamination) if cfg.decontamination.files else None
        )
        pii = cfg.pii
        self.pii = PIIRedactor(pii) if pii.emails or pii.ips or pii.phones else None

    def judge(self, doc: Document, every_step: bool = False) -> dict[str, str | None]:
        """Run the steps on `doc`, in order, until one drops it (with `every_step`: all of them, as a
        benchmark compares them); step -> reason (None: kept). The document's text is repaired and C4's
        removed lines are gone from it if C4 kept it; its metadata holds every score measured."""
        scores: dict = {}
        doc.metadata["filter"] = scores
        if self.cfg.unicode_repair:
            repaired = repair_unicode(doc.text)
            scores["unicode_repaired"] = repaired != doc.text
            doc.text = repaired
        verdicts: dict[str, str | None] = {}

        def done(step: str, reason: str | None) -> bool:
            verdicts[step] = reason
            return reason is not None and not every_step

        if self.url and done("url", self.url.check(doc.url)):
            return verdicts
        if self.language and done("language", self.language.check(doc)):
            return verdicts
        language = doc.metadata.get("language")
        text = Text(doc.text)
        for rule in self.rules:
            if isinstance(rule, C4Quality):
                verdict, trimmed = rule.check(text, language)
                if verdict.reason is None:
                    text = trimmed
                    doc.text = trimmed.text
            else:
                verdict = rule.check(text, language)
            scores[rule.name] = verdict.scores
            if verdict.skipped:
                scores.setdefault("skipped", []).extend(verdict.skipped)
            if done(rule.name, verdict.reason):
                return verdicts
        if self.badwords and done("badwords", self.badwords.check(doc.text, language, scores)):
            return verdicts
        if self.decontaminator:
            hits, file = self.decontaminator.match(doc.text)
            scores["decontamination"] = {"ngrams": hits, "file": file}
            drop = hits > 0 and self.cfg.decontamination.action == "drop"
            done("decontamination", "decontamination.ngrams" if drop else None)
        return verdicts

    def redact(self, doc: Document) -> dict[str, int]:
        """Replace e-mail addresses, IP addresses and phone numbers in a kept document; counts by type."""
        if self.pii is None:
            return {}
        doc.text, counts = self.pii.redact(doc.text, doc.url)
        doc.metadata["pii"] = counts
        return counts


def first_reason(verdicts: dict[str, str | None]) -> str | None:
    return next((r for r in verdicts.values() if r is not None), None)
