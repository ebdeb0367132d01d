from __future__ import annotations

import sys
import time

import pytest

from pipeline.documents import Document
from pipeline.extract import extract_document
from pipeline.filters import (
    FilterConfig,
    LanguageFilter,
    QualityFilter,
    RegexWordTokenizer,
    build_filters,
    first_failure,
)
from pipeline.stats import Stats
from pipeline.warc import iter_warc_responses
from tests.pipeline.conftest import DATA

# real German prose (from the German Wikipedia article on Hamburg, paraphrased into plain sentences)
GERMAN = (
    "Hamburg ist eine Stadt im Norden Deutschlands und mit fast zwei Millionen Einwohnern die zweitgrößte "
    "Stadt des Landes. Der Hafen gehört zu den größten Häfen Europas und ist seit Jahrhunderten wichtig für "
    "den Handel. Viele Menschen besuchen im Sommer die Elbe, die Speicherstadt und die Elbphilharmonie, "
    "deren Konzertsaal für seine besondere Akustik bekannt ist. Im Winter ist das Wetter oft grau und nass."
)


@pytest.fixture(scope="module")
def kept_pages(sample_documents):
    return [doc for _, doc, reason in sample_documents if reason is None]


def test_english_pages_pass_the_language_filter(kept_pages):
    lang = LanguageFilter()
    for doc in kept_pages:
        assert lang.check(doc) is None
        assert doc.metadata["language"] == "en" and doc.metadata["language_score"] >= 0.99


def test_most_english_pages_pass_every_filter(kept_pages):
    filters = build_filters()
    reasons = [first_failure(filters, Document(id=d.id, text=d.text)) for d in kept_pages]
    # measured: 19 of 20 kept; the one dropped (movebuddha.com) is a list of movers with repeated lines
    assert reasons.count(None) >= 18
    assert all(r.startswith("gopher_") for r in reasons if r)


def test_french_page_is_dropped():
    (fr,) = [r for r in iter_warc_responses(str(DATA / "page-fr.warc.gz"), Stats()) if r.status == 200]
    doc, reason = extract_document(fr, "page-fr.warc.gz")
    assert reason is None
    assert LanguageFilter().check(doc) == "language_fr"
    assert doc.metadata["language"] == "fr" and doc.metadata["language_score"] > 0.99


def test_german_text_is_dropped_unless_allowed():
    doc = Document(id="de", text=GERMAN)
    assert LanguageFilter().check(doc) == "language_de"
    assert LanguageFilter(languages=("en", "de")).check(Document(id="de", text=GERMAN)) is None


def test_low_confidence_and_empty_text():
    doc = Document(id="x", text="OK 123 ### 456")
    reason = LanguageFilter(languages=(), min_score=0.99).check(doc)
    assert reason == "language_score_below_0.99" and doc.metadata["language_score"] < 0.99
    empty = Document(id="e", text="  \n ")
    assert LanguageFilter().check(empty) == "language_empty_text" and empty.metadata["language"] is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Home\nAbout us\nContact\nLogin\nPrivacy policy\nTerms of use", "gopher_short_doc"),
        ("\n".join(["- item"] * 80), "gopher_too_many_bullets"),
        ("#seo #marketing #tips #growth #social #media #brand " * 12, "gopher_too_many_hashes"),
        (
            "\n\n".join(["Subscribe to our newsletter for the latest news and offers from the store."] * 12),
            "gopher_repetition_dup_para_frac",
        ),
        ("1234 5678 9012 3456 7890 " * 30, "gopher_below_alpha_threshold"),
    ],
    ids=["navigation", "bullets", "hashtags", "repeated-paragraphs", "numbers"],
)
def test_junk_is_dropped_with_a_gopher_reason(text, reason):
    doc = Document(id="junk", text=text)
    assert QualityFilter(quality={}, repetition={}).check(doc) == reason
    assert {"words", "mean_word_length", "alpha_words_ratio", "dup_line_ratio"} <= set(doc.metadata)


def test_quality_scores_recorded(kept_pages):
    doc = Document(id=kept_pages[0].id, text=kept_pages[0].text)
    assert first_failure(build_filters(), doc) is None
    assert doc.metadata["words"] > 500 and 3 < doc.metadata["mean_word_length"] < 10
    assert 0.8 <= doc.metadata["alpha_words_ratio"] <= 1 and 0 <= doc.metadata["dup_line_ratio"] < 0.3


def test_build_filters_follows_the_config():
    assert [f.name for f in build_filters()] == ["language", "gopher"]
    assert [f.name for f in build_filters(FilterConfig(languages=()))] == ["gopher"]
    assert build_filters(FilterConfig(languages=(), gopher_quality=False, gopher_repetition=False)) == []
    short = Document(
        id="s", text="A short but perfectly fine English sentence about the weather and the sea."
    )
    assert first_failure(build_filters(), short) == "gopher_short_doc"
    # without the repetition rules: datatrove counts a 4-gram seen once as the "top duplicate", so a text
    # this short always fails them
    assert (
        first_failure(build_filters(FilterConfig(min_doc_words=5)), short) == "gopher_repetition_top_4_gram"
    )
    assert first_failure(build_filters(FilterConfig(min_doc_words=5, gopher_repetition=False)), short) is None
    loose = FilterConfig(
        languages=(), gopher_repetition=False, gopher_quality_args={"min_stop_words": 0, "min_doc_words": 1}
    )
    assert first_failure(build_filters(loose), Document(id="n", text="Winter evening snow")) is None


def test_regex_word_tokenizer():
    tok = RegexWordTokenizer()
    words = tok.word_tokenize("Don't stop: it's (3.5) e-mails! — U.S. | “quoted” ...")
    assert words == ["Don't", "stop", "it's", "3.5", "e-mails", "U.S", "quoted"]
    text = "First sentence. Second one!\nA line without a stop\n\nLast one?"
    assert tok.sent_tokenize(text) == ["First sentence.", "Second one!", "A line without a stop", "Last one?"]
    assert [text[a:b] for a, b in tok.span_tokenize(text)] == tok.sent_tokenize(text)


def test_no_spacy_and_not_slow(kept_pages):
    filters = build_filters()
    first_failure(filters, Document(id="warm", text=kept_pages[0].text))  # loads the language model
    start = time.perf_counter()
    for d in kept_pages:
        first_failure(filters, Document(id=d.id, text=d.text))
    per_doc = (time.perf_counter() - start) / len(kept_pages)
    assert per_doc < 0.5  # measured ~0.02-0.03 s for these 11k-character pages on 2 busy cores
    assert "spacy" not in sys.modules and "fasttext" not in sys.modules
