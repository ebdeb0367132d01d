"""The text-quality rules of FineWeb: Gopher repetition, Gopher quality, C4 and FineWeb's own.

Each rule is one class with a config dataclass (defaults: the published thresholds, as datatrove's blocks
set them and FineWeb ran them) and one method, `check(text, language, scores) -> reason or None`. It
writes every score it judges into `scores` (all of them, also past the first failing one, so a user can
re-threshold later from the metadata alone) and returns the first failing sub-rule in datatrove's order,
named by its score: the reason "gopher_quality.mean_word_length" is judged on the score
`metadata.filter.gopher_quality.mean_word_length`.

Rules that only make sense for some languages are skipped for the others and say so in `skipped`: mean
word length and short lines mean nothing in a script without spaces, stop words need a list for the
language, C4's cookie/terms-of-use phrases are English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.words import Text, ends_sentence, hash_token, remove_citations, sentences_per_line

# Gopher's stop words for English (datatrove's list) and their like for other languages: the most common
# function words, enough that any running text has two of them. Unspaced scripts: single characters.
STOP_WORDS = {
    "en": ("the", "be", "to", "of", "and", "that", "have", "with"),
    "de": ("der", "die", "und", "in", "den", "von", "zu", "das", "mit", "sich", "ist", "nicht"),
    "fr": ("le", "la", "les", "de", "et", "un", "une", "des", "du", "est", "que", "pour"),
    "es": ("el", "la", "de", "que", "y", "en", "los", "se", "del", "las", "por", "un"),
    "it": ("il", "di", "che", "e", "la", "per", "un", "in", "del", "non", "una", "sono"),
    "pt": ("de", "a", "o", "que", "e", "do", "da", "em", "um", "para", "com", "não"),
    "nl": ("de", "het", "een", "en", "van", "in", "is", "dat", "op", "te", "zijn", "niet"),
    "ru": ("и", "в", "не", "на", "что", "с", "по", "это", "как", "он", "к", "из"),
    "pl": ("i", "w", "nie", "na", "się", "z", "do", "to", "że", "jest", "jak", "o"),
    "zh": ("的", "了", "是", "在", "和", "有", "我", "不", "这", "也", "就", "人"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "れ", "な"),
}
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_PARAGRAPH_RE = re.compile(r"\n{2,}")


@dataclass
class Verdict:
    """What one rule found: its scores, its reason (None: kept), the sub-rules skipped for the language."""

    scores: dict
    reason: str | None = None
    skipped: tuple[str, ...] = ()


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(elements, characters) that repeat an earlier element, as Gopher counts duplicate lines."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n, chars = n + 1, chars + len(x)
        else:
            seen.add(x)
    return n, chars


def _ratio(a: float, b: float) -> float:
    return float(a) / b if b else 0.0


# --- Gopher repetition --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GopherRepetitionConfig:
    enabled: bool = True
    dup_para_frac: float = 0.3
    dup_para_char_frac: float = 0.2
    dup_line_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    top_2_gram_char_frac: float = 0.2
    top_3_gram_char_frac: float = 0.18
    top_4_gram_char_frac: float = 0.16
    dup_5_gram_char_frac: float = 0.15
    dup_6_gram_char_frac: float = 0.14
    dup_7_gram_char_frac: float = 0.13
    dup_8_gram_char_frac: float = 0.12
    dup_9_gram_char_frac: float = 0.11
    dup_10_gram_char_frac: float = 0.10


class GopherRepetition:
    """Gopher's repetition rules (Rae et al. 2021, table A1): repeated paragraphs, lines and n-grams."""

    name = "gopher_repetition"

    def __init__(self, cfg: GopherRepetitionConfig) -> None:
        self.cfg = cfg

    def check(self, doc: Text, language: str | None = None) -> Verdict:
        text, s = doc.text, {}
        paragraphs = _PARAGRAPH_RE.split(text.strip()) if "\n\n" in text else [text.strip()]
        n, chars = _duplicates(paragraphs)
        s["dup_para_frac"], s["dup_para_char_frac"] = _ratio(n, len(paragraphs)), _ratio(chars, len(text))
        parts = text.split("\n")  # as re.split("\n+"): empty lines dropped, except first and last
        lines = [parts[0], *(p for p in parts[1:-1] if p), parts[-1]] if len(parts) > 1 else parts
        n, chars = _duplicates(lines)
        s["dup_line_frac"], s["dup_line_char_frac"] = _ratio(n, len(lines)), _ratio(chars, len(text))
        t = doc.tokens
        lengths = t.ends - t.starts
        grams = _ngram_ids(t.hashes, max(DUP_NGRAMS))
        for n in TOP_NGRAMS:
            s[f"top_{n}_gram_char_frac"] = _ratio(_top_ngram_chars(grams[n], lengths, n), len(text))
        for n in DUP_NGRAMS:
            s[f"dup_{n}_gram_char_frac"] = _ratio(_repeated_ngram_chars(grams[n], lengths, n), len(text))
        reason = next((k for k, v in s.items() if v > getattr(self.cfg, k)), None)
        return Verdict(s, reason and f"{self.name}.{reason}")


@dataclass
class _Grams:
    """The n-grams of a token sequence that may repeat: their positions (ascending), one small integer each
    (equal exactly for equal n-grams), and how often each distinct one occurs. An n-gram whose
    (n-1)-gram prefix occurs once occurs once too: it is left out, so longer n-grams cost less."""

    n: int
    total: int  # n-grams in the text, left out or not
    positions: np.ndarray
    ids: np.ndarray
    counts: np.ndarray


def _ngram_ids(hashes: np.ndarray, longest: int) -> dict[int, _Grams]:
    """n -> the n-grams of the tokens, n = 1..longest. An n-gram's id ranks the pair (its (n-1)-gram's
    id, its last token's id), so no value ever overflows."""
    out: dict[int, _Grams] = {}
    positions, values = np.arange(len(hashes)), hashes
    for n in range(1, longest + 1):
        if n > 1:
            prev = out[n - 1]
            mask = prev.counts[prev.ids] > 1
            mask &= prev.positions + n <= len(hashes)
            positions = prev.positions[mask]
            values = prev.ids[mask] * (len(hashes) + 1) + out[1].ids[positions + n - 1]
        _, ids, counts = np.unique(values, return_inverse=True, return_counts=True)
        out[n] = _Grams(n, max(len(hashes) - n + 1, 0), positions, ids.astype(np.int64), counts)
    return out


def _top_ngram_chars(grams: _Grams, lengths: np.ndarray, n: int) -> int:
    """Characters of the most frequent n-gram (joined by spaces) times its count; ties: the first seen."""
    if not grams.total:
        return 0
    top = int(grams.counts.max()) if len(grams.counts) else 1
    if top == 1:
        at = 0  # every n-gram occurs once: the first
    else:
        at = int(grams.positions[grams.counts[grams.ids] == top][0])
    return (int(lengths[at : at + n].sum()) + n - 1) * top


def _repeated_ngram_chars(grams: _Grams, lengths: np.ndarray, n: int) -> int:
    """Characters of n-grams that repeat an earlier one, scanned as Gopher does: after a repeat the scan
    jumps past it. Only n-grams occurring twice or more can change the scan, so only they are visited."""
    mask = grams.counts[grams.ids] > 1
    if not mask.any():
        return 0
    candidates, ids = grams.positions[mask], grams.ids[mask]
    ends = np.concatenate(([0], np.cumsum(lengths)))
    chars = ends[candidates + n] - ends[candidates]
    seen: set[int] = set()
    repeated, resume = 0, 0
    for i, g, size in zip(candidates.tolist(), ids.tolist(), chars.tolist(), strict=True):
        if i < resume:
            continue
        if g in seen:
            repeated += size
            resume = i + n
        else:
            seen.add(g)
    return repeated


# --- Gopher quality -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GopherQualityConfig:
    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2


class GopherQuality:
    """Gopher's quality rules: length, mean word length, symbols, bullets, ellipses, letters, stop words."""

    name = "gopher_quality"

    def __init__(self, cfg: GopherQualityConfig) -> None:
        self.cfg = cfg

    def check(self, doc: Text, language: str | None = None) -> Verdict:
        c, text, t = self.cfg, doc.text, doc.tokens
        contractions = len(t.contractions)  # spaCy's "do" + "n't": two words with letters
        n_words = doc.token_count
        content = int((~t.symbol).sum()) + contractions
        lines = doc.lines or [""]
        stop_words = STOP_WORDS.get(language or "en")
        s = {
            "words": content,
            "mean_word_length": _ratio(int((t.ends - t.starts)[~t.symbol].sum()), content),
            "hash_ratio": _ratio(text.count("#"), n_words),
            "ellipsis_ratio": _ratio(text.count("...") + text.count("…"), n_words),
            "bullet_lines_ratio": _ratio(sum(x.lstrip().startswith(("•", "-")) for x in lines), len(lines)),
            "ellipsis_lines_ratio": _ratio(sum(x.rstrip().endswith(("...", "…")) for x in lines), len(lines)),
            "alpha_words_ratio": _ratio(int(t.alpha.sum()) + contractions, n_words),
            "stop_words": _stop_words_found(t.hashes, stop_words) if stop_words else 0,
        }
        skipped = []
        if doc.unspaced:
            skipped.append(f"{self.name}.mean_word_length:unspaced script")
        if not stop_words:
            skipped.append(f"{self.name}.stop_words:no list for {language}")
        failing = [
            ("words", not c.min_doc_words <= s["words"] <= c.max_doc_words),
            (
                "mean_word_length",
                not doc.unspaced
                and not c.min_avg_word_length <= s["mean_word_length"] <= c.max_avg_word_length,
            ),
            ("hash_ratio", s["hash_ratio"] > c.max_symbol_word_ratio),
            ("ellipsis_ratio", s["ellipsis_ratio"] > c.max_symbol_word_ratio),
            ("bullet_lines_ratio", s["bullet_lines_ratio"] > c.max_bullet_lines_ratio),
            ("ellipsis_lines_ratio", s["ellipsis_lines_ratio"] > c.max_ellipsis_lines_ratio),
            ("alpha_words_ratio", s["alpha_words_ratio"] < c.min_alpha_words_ratio),
            ("stop_words", bool(stop_words) and s["stop_words"] < c.min_stop_words),
        ]
        reason = next((k for k, bad in failing if bad), None)
        return Verdict(s, reason and f"{self.name}.{reason}", tuple(skipped))


def _stop_words_found(hashes: np.ndarray, words: tuple[str, ...]) -> int:
    return len(np.unique(hashes[np.isin(hashes, _stop_hashes(words))]))


@cache
def _stop_hashes(words: tuple[str, ...]) -> np.ndarray:
    return np.array([hash_token(w) for w in words], dtype=np.uint64)


# --- C4 -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class C4Config:
    enabled: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = False  # C4 kept only such lines; FineWeb turned this off
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class C4Quality:
    """C4's rules (Raffel et al. 2020): lines that are not prose go, then a page with too few sentences,
    "lorem ipsum" or a curly bracket goes. The only rule that edits the text: the lines it removes."""

    name = "c4"

    def __init__(self, cfg: C4Config) -> None:
        self.cfg = cfg

    def check(self, doc: Text, language: str | None = None) -> tuple[Verdict, Text]:
        """The verdict, and the text with the removed lines gone (the next rules read that text)."""
        c = self.cfg
        english = c.filter_policy and (language or "en") == "en"
        kept_lines: list[str] = []
        kept_tokens = 0  # the tokens of the text C4 leaves, counted from the lines' (no second cut)
        sentences, first_doc_rule = 0, None
        per_line = sentences_per_line(doc) if c.min_num_sentences > 0 else None
        # what the page holds at all, so most lines need no substring search
        low = doc.text.lower()
        lorem = c.filter_lorem_ipsum and "lorem ipsum" in low
        curly = c.filter_curly_bracket and "{" in low
        javascript = c.filter_javascript and "javascript" in low
        policy = english and any(p in low for p in POLICY_PHRASES)
        citations = c.remove_citations and "[" in low
        for i, line in enumerate(doc.lines):
            line = line.strip()
            words = line.split()
            if 0 < c.max_word_length < len(line) and max(map(len, words)) > c.max_word_length:
                continue
            cited, line = line, remove_citations(line) if citations else line
            changed = line != cited
            if c.filter_no_terminal_punct and (not ends_sentence(line) or line.endswith("...")):
                continue
            if doc.unspaced:  # a CJK line is one "word" to str.split: count its characters instead
                words = [ch for ch in line if not ch.isspace()]
            if len(words) < c.min_words_per_line:
                continue
            lower = line.lower() if lorem or curly or javascript or policy else ""
            has_js = javascript and "javascript" in lower
            if first_doc_rule is None:
                if lorem and "lorem ipsum" in lower:
                    first_doc_rule = "lorem_ipsum"
                elif curly and "{" in line and not has_js:
                    first_doc_rule = "curly_bracket"
            if has_js or (policy and any(p in lower for p in POLICY_PHRASES)):
                continue
            if per_line is not None:
                sentences += int(per_line[i])
            kept_lines.append(line)
            kept_tokens += Text(line).token_count if changed else int(doc.tokens_per_line[i])
        s = {
            "lines_removed": len(doc.lines) - len(kept_lines),
            "sentences": sentences,
            "lorem_ipsum": first_doc_rule == "lorem_ipsum",
            "curly_bracket": first_doc_rule == "curly_bracket",
        }
        reason = first_doc_rule or ("sentences" if sentences < c.min_num_sentences else None)
        skipped = () if english or not c.filter_policy else (f"{self.name}.policy:English phrases",)
        joined = "\n".join(kept_lines).strip()
        kept = doc
        if joined != doc.text:
            kept = Text(joined)
            kept.__dict__.update(token_count=kept_tokens, unspaced=doc.unspaced)
        return Verdict(s, reason and f"{self.name}.{reason}", skipped), kept


# --- FineWeb ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineWebQualityConfig:
    enabled: bool = True
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class FineWebQuality:
    """FineWeb's own rules (Penedo et al. 2024): lines ending in punctuation, short lines, repeated lines,
    and newlines per word (lists)."""

    name = "fineweb_quality"

    def __init__(self, cfg: FineWebQualityConfig) -> None:
        self.cfg = cfg

    def check(self, doc: Text, language: str | None = None) -> Verdict:
        c, text = self.cfg, doc.text
        lines = [x for x in text.split("\n") if x.strip()]
        s = {
            "line_punct_ratio": _ratio(sum(map(ends_sentence, lines)), len(lines)),
            "short_line_ratio": _ratio(sum(len(x) <= c.short_line_length for x in lines), len(lines)),
            "char_dup_ratio": _ratio(_duplicates(lines)[1], len(text) - text.count("\n")),
            "newline_ratio": _ratio(text.count("\n"), doc.token_count),
        }
        punct_low = s["line_punct_ratio"] < c.line_punct_thr
        failing = [
            ("empty", not lines),
            (
                "line_punct_ratio",
                punct_low and not (s["line_punct_ratio"] == 0 and c.line_punct_exclude_zero),
            ),
            ("short_line_ratio", not doc.unspaced and s["short_line_ratio"] > c.short_line_thr),
            ("char_dup_ratio", s["char_dup_ratio"] > c.char_duplicates_ratio),
            ("newline_ratio", s["newline_ratio"] > c.new_line_ratio),
        ]
        reason = next((k for k, bad in failing if bad), None)
        skipped = (f"{self.name}.short_line_ratio:unspaced script",) if doc.unspaced else ()
        return Verdict(s, reason and f"{self.name}.{reason}", skipped)
