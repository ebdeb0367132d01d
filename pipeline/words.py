"""Words, lines and sentences as the quality rules count them: at numpy speed, and as FineWeb counted them.

FineWeb's rules (datatrove's blocks) count the tokens of spaCy's English tokenizer, and their thresholds
were set on those counts. spaCy splits each whitespace-separated chunk by prefix, suffix and infix rules:
"(end)." is "(", "end", ")", "."; "/etc", "03/03/2026", "3.14", a URL and an e-mail address stay whole; a
contraction is two ("do", "n't"); "e.g." and "Inc." keep their dot; "16GB" is "16", "GB". The same rules
are applied here to the text's code points with a character-class table, deciding only the marks one by
one: ~0.8 ms for a 10k-character page, where spaCy takes ~24 ms (and is not a dependency).
A character of a script written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) is a
token of its own: without a dictionary that is as far as such text can be cut, and it keeps those pages
from counting as a handful of huge "words".

A sentence ends at a "." / "!" / "?" token (or a CJK full stop), as spaCy's sentencizer decides.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

# spaCy's English tokenizer rules (spacy/lang/punctuation.py, char_classes.py), as single characters:
# marks split off the start of a whitespace-separated chunk (prefixes), off its end (suffixes), and
# inside it only between certain neighbours (infixes); anything else stays inside its chunk's token
# ("/etc", "03/03/2026", "-v", "|---|").
_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_QUOTES = "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_CURRENCY = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
_PREFIX = set(_PUNCT + _QUOTES + _CURRENCY + "§%=—–")
_SUFFIX = set(_PUNCT + _QUOTES + "—–")
_HYPHENS = set("-–—~")
_INFIX = set(":<>=/")

(
    ALPHA,
    SPACE,
    UNSPACED,
    PUNCT,
    DIGIT,
    SENT_END,
    APOSTROPHE,
    PREFIX,
    SUFFIX,
    ICON,
    LOWER,
    UPPER,
    HYPHEN,
    INFIX,
    DOT_AFTER,  # a "." after it is a suffix: %²-+
    MATH,  # between digits, an infix: +-*^
    MARK,  # neither a word character nor a space: the only characters whose place needs deciding
) = (1 << i for i in range(17))
# spaCy's special cases that matter for counts: abbreviations keep their final "." (so no sentence ends
# there), and a unit right after a number is a token of its own ("16GB" is "16" and "GB")
_ABBREVIATIONS = frozenset(
    "e.g i.e a.m p.m Ph.D vs Mr Mrs Ms Dr Prof St Jr Sr Inc Co Corp Ltd Bros Gov Sen Rep Rev Mt "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split()
)
_LONGEST_ABBREVIATION = max(map(len, _ABBREVIATIONS))
_PREFIX_CHARS = "".join(sorted(_PREFIX))
_UNIT_RE = re.compile(
    r"(?:km|cm|mm|dm|nm|µm|m|ha|yd|in|ft|kg|mg|µg|g|t|lb|oz|mph|kmh|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K"
    r"|am|pm)(?![\w])"
)
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"]+?(?=[.,;:!?)\]\"'»]*(?:\s|$))")
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # kana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),  # CJK ideographs
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FA1F),
)


def _flags(cp: int) -> int:
    ch = chr(cp)
    tests = (
        (ALPHA, ch.isalpha()),
        (SPACE, ch.isspace()),
        (UNSPACED, any(a <= cp <= b for a, b in _UNSPACED_RANGES)),
        (PUNCT, ch in PUNCTUATION_SET),
        (DIGIT, ch.isdigit()),
        (SENT_END, ch in ".!?。！？｡．"),
        (APOSTROPHE, ch in "'’"),
        (PREFIX, ch in _PREFIX),
        (SUFFIX, ch in _SUFFIX),
        (ICON, unicodedata.category(ch) == "So"),
        (LOWER, ch.islower()),
        (UPPER, ch.isupper()),
        (HYPHEN, ch in _HYPHENS),
        (INFIX, ch in _INFIX),
        (DOT_AFTER, ch in "%²-+"),
        (MATH, ch in "+-*^"),
        (MARK, not (ch.isalnum() or ch.isspace())),  # "_" too: spaCy splits it off like a mark
    )
    return sum(flag for flag, yes in tests if yes)


_TABLE = np.array([_flags(c) for c in range(0x10000)], dtype=np.uint32)  # the Basic Multilingual Plane
_P = np.uint64(0x100000001B3)  # odd: invertible mod 2**64, so a span's hash does not depend on its position


def _classes(cp: np.ndarray) -> np.ndarray:
    flags = _TABLE[np.minimum(cp, 0xFFFF)]
    astral = np.flatnonzero(cp > 0xFFFF)
    if len(astral):  # emoji, historic scripts, rare ideographs: few, looked up one by one
        flags[astral] = [_flags(int(c)) for c in cp[astral]]
    return flags


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(over="ignore"):
        pw = np.cumprod(np.full(n, _P, dtype=np.uint64), dtype=np.uint64)
        inv = np.cumprod(np.full(n, pow(int(_P), -1, 2**64), dtype=np.uint64), dtype=np.uint64)
    return np.concatenate(([np.uint64(1)], pw)), np.concatenate(([np.uint64(1)], inv))


_POW, _INV = _powers(1 << 16)


@dataclass
class Tokens:
    """The tokens of one text: spans in code points and what each is made of."""

    starts: np.ndarray
    ends: np.ndarray
    symbol: np.ndarray  # only punctuation (Gopher does not count it as a word)
    alpha: np.ndarray  # holds a letter
    sentence_end: np.ndarray  # a ".", "!" or "?" of its own
    hashes: np.ndarray  # equal tokens, equal hashes
    contractions: np.ndarray  # apostrophes between letters: spaCy splits "don't" in two, this keeps one
    unspaced: int  # tokens that are a character of a script without spaces

    def __len__(self) -> int:
        return len(self.starts)


def _at(values: np.ndarray, positions: np.ndarray, fill: int) -> np.ndarray:
    """values[positions], `fill` where a position falls off either end."""
    out = (
        values[np.clip(positions, 0, len(values) - 1)]
        if len(values)
        else np.zeros(len(positions), values.dtype)
    )
    out[(positions < 0) | (positions >= len(values))] = fill
    return out


def tokenize(text: str) -> Tokens:
    """Cut `text` into tokens (see the module docstring). Only the marks (punctuation, symbols: ~5% of a
    page) are looked at one by one, as arrays of their positions; letters and digits join by default."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(cp)
    f = _classes(cp)
    space_at = np.flatnonzero(f & SPACE)
    m = np.flatnonzero(f & MARK)  # the marks' positions
    fm, cm = f[m], cp[m]
    prev, prev2, nxt = _at(f, m - 1, SPACE), _at(f, m - 2, SPACE), _at(f, m + 1, SPACE)
    dot = cm == 0x2E
    dots = dot & ((_at(cp, m - 1, 0) == 0x2E) | (_at(cp, m + 1, 0) == 0x2E))  # "..": a run, split as one
    # suffixes: a "." only after a digit, a lower-case letter, %²-+, a mark or a quote, or two capitals
    after_ok = prev & (DIGIT | LOWER | SUFFIX | DOT_AFTER) != 0
    two_capitals = (prev & UPPER != 0) & (prev2 & UPPER != 0)
    suffix = (fm & (SUFFIX | ICON) != 0) | dots | (dot & (after_ok | two_capitals))
    suffix |= ((cm == 0x25) | (cm == 0x2B)) & (prev & DIGIT != 0)  # 50% and 3+
    prefix = (fm & (PREFIX | ICON) != 0) | dots | ((cm == 0x2B) & (nxt & DIGIT == 0))
    # each mark's chunk (the run of non-spaces holding it), and whether all of it up to the mark are
    # prefixes (leading) or all of it from the mark on are suffixes (trailing)
    k = np.searchsorted(space_at, m)
    first = np.where(k > 0, space_at[np.maximum(k - 1, 0)] + 1, 0) if len(space_at) else np.zeros_like(m)
    last = space_at[np.minimum(k, len(space_at) - 1)] - 1 if len(space_at) else np.full_like(m, n - 1)
    last = np.where(k < len(space_at), last, n - 1)
    prefixes = np.concatenate(([0], np.cumsum(prefix)))
    suffixes = np.concatenate(([0], np.cumsum(suffix)))
    i = np.arange(len(m))
    leading = prefix & (prefixes[i + 1] - prefixes[np.searchsorted(m, first)] == m - first + 1)
    trailing = (
        suffix & ~leading & (suffixes[np.searchsorted(m, last, side="right")] - suffixes[i] == last - m + 1)
    )
    in_url = np.zeros(len(m), dtype=bool)
    if "://" in text or "www." in text:  # a URL is one token (spaCy's url_match); a regex only then
        for u in _URL_RE.finditer(text):
            in_url[np.searchsorted(m, u.start()) : np.searchsorted(m, u.end())] = True
        leading &= ~in_url
        trailing &= ~in_url
    short = trailing & dot & (m - first <= _LONGEST_ABBREVIATION + 2) & (prev & ALPHA != 0)
    for j in np.flatnonzero(short).tolist():  # "Inc." and "e.g." keep their "."
        if text[first[j] : m[j]].lstrip(_PREFIX_CHARS) in _ABBREVIATIONS:
            trailing[j] = False
    core = ~leading & ~trailing
    alnum_before, alpha_after = prev & (ALPHA | DIGIT) != 0, nxt & ALPHA != 0
    infix = (
        core
        & ~in_url
        & (
            (fm & ICON != 0)
            | dots
            | (cm == 0x2026)
            | ((fm & (HYPHEN | INFIX) != 0) & alnum_before & alpha_after)
            | ((cm == 0x2C) & (prev & ALPHA != 0) & alpha_after)
            | (dot & (prev & (LOWER | APOSTROPHE) != 0) & (nxt & (UPPER | APOSTROPHE) != 0))
            | ((fm & MATH != 0) & (prev & DIGIT != 0) & ((nxt & DIGIT != 0) | (_at(cp, m + 1, 0) == 0x2D)))
        )
    )
    # a mark joins the letters and digits around it (kind 1), stands alone (2), or joins its own kind
    # of run: dots (3), hyphens between words (4)
    kind = np.where(core & ~infix, 1, 2)
    kind[dots] = 3
    kind[infix & (fm & HYPHEN != 0)] = 4
    # token starts: each chunk's first character; a mark that does not join (or the first of its run);
    # the character after such a mark or run; a character of an unspaced script and the one after it;
    # a unit after a number
    not_joined = kind != 1
    run_start = not_joined & (
        (kind == 2) | np.concatenate(([True], (kind[1:] != kind[:-1]) | (m[1:] != m[:-1] + 1)))
    )
    run_end = not_joined & (
        (kind == 2) | np.concatenate(((kind[:-1] != kind[1:]) | (m[1:] != m[:-1] + 1), [True]))
    )
    unspaced = np.flatnonzero(f & UNSPACED)
    after_digit = np.flatnonzero((f[1:] & ALPHA != 0) & (f[:-1] & DIGIT != 0)) + 1
    units = [i for i in after_digit.tolist() if _UNIT_RE.match(text, i)]
    chunk_starts = space_at + 1
    candidates = np.concatenate(
        (
            [0],
            chunk_starts,
            m[run_start],
            m[run_end] + 1,
            unspaced,
            unspaced + 1,
            np.array(units, dtype=np.int64),
        )
    )
    candidates = candidates[candidates < n]
    starts = _sorted_unique(candidates[(f[candidates] & SPACE) == 0])
    boundaries = _sorted_unique(
        np.concatenate((starts, space_at, [n]))
    )  # a token runs to the next start or space
    ends = boundaries[np.searchsorted(boundaries, starts, side="right")]
    contractions = m[core & (fm & APOSTROPHE != 0) & alnum_before & alpha_after]
    non_punct = np.concatenate(([0], np.cumsum((f & PUNCT) == 0)))
    letters = np.concatenate(([0], np.cumsum((f & ALPHA) != 0)))
    single = ends - starts == 1
    sentence_end = single & (f[starts] & SENT_END != 0)
    return Tokens(
        starts,
        ends,
        non_punct[ends] == non_punct[starts],
        letters[ends] > letters[starts],
        sentence_end,
        _span_hashes(cp, starts, ends),
        contractions,
        int((f[starts] & UNSPACED != 0).sum()),
    )


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    # np.unique's hash table costs ~0.3 ms here; sorting a few thousand positions, ~0.03
    x = np.sort(x)
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


def _span_hashes(cp: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    global _POW, _INV
    if len(cp) >= len(_POW):
        _POW, _INV = _powers(2 * len(cp))
    with np.errstate(over="ignore"):
        prefix = np.concatenate(
            ([np.uint64(0)], np.cumsum(cp.astype(np.uint64) * _POW[: len(cp)], dtype=np.uint64))
        )
        return (prefix[ends] - prefix[starts]) * _INV[starts]


def hash_token(token: str) -> int:
    """The hash `tokenize` gives this token (to find given words among a text's tokens)."""
    cp = np.frombuffer(token.encode("utf-32-le"), dtype=np.uint32)
    return int(_span_hashes(cp, np.array([0]), np.array([len(cp)]))[0])


def ends_sentence(line: str) -> bool:
    """The line ends with terminal punctuation (FineWeb's line_punct rule, every script's full stops)."""
    return bool(line) and line[-1] in TERMINAL_PUNCTUATION


_CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")


def remove_citations(line: str) -> str:
    """Wikipedia's [1], [edit] and [citation needed] marks, as C4 removes them."""
    return _CITATION_RE.sub("", line) if "[" in line else line


@dataclass
class Text:
    """One document cut once into what every rule reads."""

    text: str

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def tokens(self) -> Tokens:
        return tokenize(self.text)

    @cached_property
    def token_count(self) -> int:
        """Tokens as spaCy counts them (a contraction is two)."""
        return len(self.tokens) + len(self.tokens.contractions)

    @cached_property
    def unspaced(self) -> bool:
        """Mostly written in a script without spaces: word lengths and line lengths mean other things."""
        return self.tokens.unspaced > len(self.tokens) // 2 if len(self.tokens) else False

    @cached_property
    def _line_ends(self) -> np.ndarray:
        return np.cumsum([len(line) for line in self.text.splitlines(keepends=True)])

    @cached_property
    def line_of_token(self) -> np.ndarray:
        """The index in `lines` of each token's line."""
        return np.searchsorted(self._line_ends, self.tokens.starts, side="right")

    @cached_property
    def tokens_per_line(self) -> np.ndarray:
        """`token_count` line by line (no token spans a line break)."""
        lines = len(self.lines)
        contractions = np.searchsorted(self._line_ends, self.tokens.contractions, side="right")
        return np.bincount(self.line_of_token, minlength=lines) + np.bincount(contractions, minlength=lines)


def sentences_per_line(doc: Text) -> np.ndarray:
    """Sentences in each line: the first word starts one, and so does each word after a sentence end."""
    t, line, lines = doc.tokens, doc.line_of_token, len(doc.lines)
    if not len(t):
        return np.zeros(lines, dtype=np.int64)
    words = np.flatnonzero(~t.symbol)
    ends_seen = np.concatenate(([0], np.cumsum(t.sentence_end)))
    first_in_line = np.concatenate(([True], line[words][1:] != line[words][:-1]))
    prev = np.concatenate(([0], words[:-1] + 1))
    after_end = ends_seen[words] > ends_seen[prev]  # a sentence end since the previous word
    starts_sentence = first_in_line | after_end
    counts = np.bincount(line[words][starts_sentence], minlength=lines)
    marks_only = (np.bincount(line, minlength=lines) > 0) & (np.bincount(line[words], minlength=lines) == 0)
    counts[marks_only] = 1  # marks only: spaCy still makes it one sentence
    return counts
