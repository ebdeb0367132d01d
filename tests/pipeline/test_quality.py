"""The quality rules against datatrove's own code: same tokens in, same scores and decisions out.

spaCy is not installed here, so datatrove's blocks are given a tokenizer that returns our tokens (our
stand-in for spaCy's): what is tested is that each rule computes what datatrove's block computes. How
close our tokens are to spaCy's is tested on strings spaCy was run on, and on 1,344 real pages by
bench/filter_agreement.py.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest
from datatrove.data import Document as DatatroveDocument
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_top_duplicate,
    get_n_grams,
)
from datatrove.utils.word_tokenizers import WordTokenizer

from pipeline.quality import (
    C4Config,
    C4Quality,
    FineWebQuality,
    FineWebQualityConfig,
    GopherQuality,
    GopherQualityConfig,
    GopherRepetition,
    GopherRepetitionConfig,
    _ngram_ids,
    _repeated_ngram_chars,
    _top_ngram_chars,
)
from pipeline.words import Text, sentences_per_line, tokenize
from tests.pipeline.conftest import DATA

# spaCy 3's English tokenizer on these strings (run in the datatrove bench venv). Of its special cases,
# common abbreviations and units after numbers are copied; others are not ("and/or" is cut in three,
# "Ph.D." in three, emoticons like "):" in two).
SPACY = {
    "Hello, world. It's 3.14 and we don't stop... Visit https://example.com/a/b. Mail jo@example.org!": [
        "Hello", ",", "world", ".", "It", "'s", "3.14", "and", "we", "do", "n't", "stop", "...", "Visit",
        "https://example.com/a/b", ".", "Mail", "jo@example.org", "!",
    ],
    "See /etc/hosts, 03/03/2026 and run `ls -v --help` | grep x": [
        "See", "/etc", "/", "hosts", ",", "03/03/2026", "and", "run", "`", "ls", "-v", "--help", "`", "|",
        "grep", "x",
    ],
    "The U.S. team met D. Smith (well-known, 3-5 wins).": [
        "The", "U.S.", "team", "met", "D.", "Smith", "(", "well", "-", "known", ",", "3", "-", "5", "wins",
        ")", ".",
    ],
    '"Quoted," he said: 50% of $5 is ... nothing?!': [
        '"', "Quoted", ",", '"', "he", "said", ":", "50", "%", "of", "$", "5", "is", "...", "nothing",
        "?", "!",
    ],
    "lower.Upper a,b x — y 1,000.50": ["lower", ".", "Upper", "a", ",", "b", "x", "—", "y", "1,000.50"],
    "See e.g. this, i.e. that: Inc. or Co. vs. Mr. Dr. Jan. 16GB at 10am, 2K and 5km.": [
        "See", "e.g.", "this", ",", "i.e.", "that", ":", "Inc.", "or", "Co.", "vs.", "Mr.", "Dr.", "Jan.",
        "16", "GB", "at", "10", "am", ",", "2", "K", "and", "5", "km", ".",
    ],
}  # fmt: skip


def _strings(text: str) -> list[str]:
    t = tokenize(text)
    return [text[a:b] for a, b in zip(t.starts.tolist(), t.ends.tolist(), strict=True)]


def _as_spacy(text: str) -> list[str]:
    """Our tokens with each contraction cut in two as spaCy cuts it ("do" + "n't", "It" + "'s")."""
    out = []
    for tok in _strings(text):
        m = re.fullmatch(r"(.+?)(n['’]t|['’]\w+)", tok)
        out += [m.group(1), m.group(2)] if m and tok[0].isalnum() else [tok]
    return out


@pytest.mark.parametrize("text", list(SPACY))
def test_tokens_are_spacys(text):
    assert _as_spacy(text) == SPACY[text]
    assert Text(text).token_count == len(SPACY[text])


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Real main texts (WCXB) and the same with repeated lines and paragraphs, so repetition rules bite."""
    rows = [json.loads(line) for line in gzip.open(DATA / "wcxb-truth-fixtures.jsonl.gz")]
    real = [r["main_content"] for r in rows if r["main_content"]]
    repeated = []
    for text in real[:8]:
        lines = text.splitlines()
        repeated.append("\n".join(lines + lines[: len(lines) // 3]))
        repeated.append("\n\n".join([*lines[:5], *lines[:5], *lines[5:20]]))
    short = ["Lorem ipsum dolor sit amet.\nIt is a page { of code }.", "One line only"]
    return real + repeated + short


class _OurTokens(WordTokenizer):
    """datatrove's WordTokenizer interface over our tokens: words as spaCy would cut them, sentences
    counted as our sentence rule counts them (C4 only uses how many)."""

    def __init__(self) -> None:
        super().__init__("en")

    def word_tokenize(self, text: str) -> list[str]:
        return _as_spacy(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return ["s"] * int(sentences_per_line(Text(text)).sum())

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, 0)] * int(sentences_per_line(Text(text)).sum())  # split_into_sentences: as many parts


def _dt(block, text: str) -> tuple[bool, str | None, str]:
    doc = DatatroveDocument(text=text, id="x")
    result = block.filter(doc)
    keep = result if isinstance(result, bool) else result[0]
    return keep, None if keep else (result[1] if isinstance(result, tuple) else None), doc.text


def test_repeated_and_top_ngrams_are_gophers_exactly(texts):
    for text in texts:
        words = _strings(text)
        t = tokenize(text)
        grams = _ngram_ids(t.hashes, 10)
        lengths = t.ends - t.starts
        for n in (2, 3, 4):
            expected = find_top_duplicate(get_n_grams(words, n)) if len(words) >= n else 0
            assert _top_ngram_chars(grams[n], lengths, n) == expected
        for n in range(5, 11):
            assert _repeated_ngram_chars(grams[n], lengths, n) == find_all_duplicate(words, n)


def test_rules_decide_as_datatroves_blocks(texts):
    ours = [
        (GopherRepetition(GopherRepetitionConfig()), GopherRepetitionFilter(language=_OurTokens())),
        (GopherQuality(GopherQualityConfig()), GopherQualityFilter(language=_OurTokens())),
        (FineWebQuality(FineWebQualityConfig()), FineWebQualityFilter(language=_OurTokens())),
    ]
    c4, dt_c4 = C4Quality(C4Config()), C4QualityFilter(filter_no_terminal_punct=False, language=_OurTokens())
    drops = 0
    for text in texts:
        for rule, block in ours:
            if isinstance(rule, GopherRepetition):  # its n-grams are of our tokens: contractions whole
                block = GopherRepetitionFilter(language=_WholeTokens())
            keep, reason, _ = _dt(block, text)
            verdict = rule.check(Text(text), "en")
            assert (verdict.reason is None) == keep, (rule.name, reason, verdict.reason, text[:80])
            drops += not keep
        keep, reason, trimmed = _dt(dt_c4, text)
        verdict, kept = c4.check(Text(text), "en")
        assert (verdict.reason is None) == keep, ("c4", reason, verdict.reason, text[:80])
        if keep:
            assert kept.text == trimmed and kept.token_count == Text(trimmed).token_count  # carried over
    assert drops >= 10  # the repeated texts are dropped: the comparison is not all keeps


class _WholeTokens(_OurTokens):
    def word_tokenize(self, text: str) -> list[str]:
        return _strings(text)


def test_scores_are_kept_past_the_first_failing_rule():
    text = "\n".join(["Buy now!"] * 30)
    verdict = GopherRepetition(GopherRepetitionConfig()).check(Text(text))
    assert verdict.reason == "gopher_repetition.dup_line_frac"
    assert verdict.scores["dup_line_frac"] == pytest.approx(29 / 30)
    assert verdict.scores["top_2_gram_char_frac"] > 0.2  # judged too, though dup_line_frac failed first


def test_unspaced_scripts_are_not_judged_by_word_length_or_short_lines():
    # real Chinese prose (a paragraph on Hangzhou's West Lake, written for this test)
    zh = (
        "西湖位于浙江省杭州市西部，是中国著名的风景名胜区。湖的三面环山，面积约六点三九平方千米。\n"
        "自唐宋以来，许多诗人在这里留下了脍炙人口的诗篇，苏轼的诗句至今仍被人们传诵。\n"
        "春天的苏堤桃红柳绿，夏天的曲院荷花盛开，秋天的平湖秋月格外明亮，冬天的断桥残雪也很有名。\n"
        "每年都有大量的游客来到这里，沿着湖边散步，或者乘船游览湖中的小岛。\n"
        "二零一一年，西湖文化景观被列入世界遗产名录，这使它在世界上更加出名了。"
    )
    doc = Text(zh)
    assert doc.unspaced and doc.token_count > 150  # characters, not five huge "words"
    quality = GopherQuality(GopherQualityConfig()).check(doc, "zh")
    assert quality.reason is None, quality
    assert "gopher_quality.mean_word_length:unspaced script" in quality.skipped
    assert quality.scores["stop_words"] >= 2  # 的, 是, 在... from the Chinese list
    fineweb = FineWebQuality(FineWebQualityConfig()).check(doc, "zh")
    assert fineweb.reason is None and fineweb.skipped == ("fineweb_quality.short_line_ratio:unspaced script",)
    c4_verdict, kept = C4Quality(C4Config()).check(doc, "zh")
    assert c4_verdict.reason is None and kept.text == zh  # its lines are prose: none removed


def test_language_without_stop_words_skips_that_rule_and_says_so():
    text = "Lorem " * 3 + "Ĉiu homo havas la rajton al vivo, libereco kaj sekureco de sia persono. " * 8
    verdict = GopherQuality(GopherQualityConfig()).check(Text(text), "eo")
    assert "gopher_quality.stop_words:no list for eo" in verdict.skipped
    assert verdict.reason is None
