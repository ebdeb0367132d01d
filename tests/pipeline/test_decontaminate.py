"""Evaluation-set decontamination: real-looking benchmark files (tests/data/decontam) against documents that
copy their items with other case, punctuation and line breaks, or share fewer words than an n-gram."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.config import UsageError, from_table
from pipeline.decontaminate import DecontamConfig, Decontaminator, _tokens
from tests.pipeline.conftest import DATA, SHARED, needs_shared, read_jsonl_gz

EVALS = DATA / "decontam"
JSONL, TXT = EVALS / "benchmark.jsonl", EVALS / "reading.txt"
ITEMS = {row["id"]: row for row in map(json.loads, JSONL.read_text().splitlines())}
BOTTLE = ITEMS["sci-001"]["question"]  # 24 words
LIGHTHOUSE = re.split(r"\n\s*\n", TXT.read_text())[1]  # a 52-word passage
SHAKESPEARE = (DATA / "tinyshakespeare-excerpt.txt").read_text()


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def build(*files: Path | str, **settings) -> Decontaminator:
    return Decontaminator.from_config(DecontamConfig(files=tuple(str(f) for f in files), **settings))


@pytest.fixture(scope="module")
def both() -> Decontaminator:
    return build(JSONL, TXT)


def test_copy_with_other_case_punctuation_and_whitespace_is_found(both: Decontaminator) -> None:
    copied = (
        "QUIZ OF THE WEEK!!! a student places a SEALED glass-bottle, full of water... in a freezer "
        "(overnight);   which statement best explains why the bottle cracks by morning?? Answer below."
    )
    page = f"{SHAKESPEARE[:3000]}\n\n{copied}\n\n{SHAKESPEARE[3000:6000]}"
    assert both.check(page) == len(words(BOTTLE)) - 13 + 1  # every 13-gram of the question
    assert both.match(page) == (both.check(page), storage.normalize(str(JSONL)))
    passage = LIGHTHOUSE.upper().replace(",", " ;").replace(" ", "\t  ")
    assert both.match(f"Found online: {passage} (source unknown)")[1] == storage.normalize(str(TXT))


def test_twelve_shared_words_are_not_a_13_gram(both: Decontaminator) -> None:
    twelve = " ".join(words(LIGHTHOUSE)[5:17])
    page = f"{SHAKESPEARE[:2000]} {twelve} umbrella {SHAKESPEARE[2000:4000]}"
    assert both.check(page) == 0
    assert build(TXT, ngram=12).check(page) == 1  # the same page does share a 12-gram
    page = f"{SHAKESPEARE[:2000]} {' '.join(words(LIGHTHOUSE)[5:18])} umbrella"
    assert both.check(page) == 1  # one word more: one 13-gram


def test_a_passage_split_across_a_line_break_is_found(both: Decontaminator) -> None:
    half = len(BOTTLE) // 2
    cut = BOTTLE.index(" ", half)
    page = f"Exam notes\n{BOTTLE[:cut]}\n{BOTTLE[cut + 1 :]}\n"
    assert both.check(page) == len(words(BOTTLE)) - 12
    dashed = BOTTLE[:cut] + " -\n" + BOTTLE[cut + 1 :]  # a dash is punctuation too
    assert both.check(dashed) == len(words(BOTTLE)) - 12


def test_unrelated_real_text_is_clean(both: Decontaminator) -> None:
    assert both.check(SHAKESPEARE) == 0
    truth = read_jsonl_gz(DATA / "wcxb-truth-fixtures.jsonl.gz")  # real pages' main content
    hits, files = both.check_batch([row["main_content"] for row in truth])
    assert len(truth) > 5 and not hits.any() and (files == -1).all()


@needs_shared
def test_shared_real_texts_are_clean_and_an_sft_copy_is_found() -> None:
    sft = SHARED / "sft" / "instruction-data.json"  # a .json list of 1,100 instruction/input/output objects
    d = build(sft, JSONL, TXT)
    assert d.stats["items"] == 1100 + len(ITEMS) + 4
    assert d.check((SHARED / "text" / "tinyshakespeare.txt").read_text()) == 0
    rows = json.loads(sft.read_text())
    long_output = next(r["output"] for r in rows if len(words(r["output"])) > 30)
    page = "Top answers, reformatted:\n" + long_output.upper().replace(". ", ".\n\n* ")
    assert d.match(page) == (len(words(long_output)) - 12, storage.normalize(str(sft)))


def test_words_are_unicode_word_runs() -> None:
    # the tokenizer's words are Python's `\w+` of the lowercased text, across scripts and symbols
    text = "Ünïcödé café—naïve «Straße» 北京大学 𝔘nicode 🎉 x½ ² a‿b हिन्दी ΟΔΥΣΣΕΥΣ l'île, don’t_stop 3.14"
    assert len(_tokens([text]).begin) == len(words(text))
    for word in words(text):
        assert len(_tokens([word]).begin) == 1
    d = Decontaminator(
        DecontamConfig(ngram=4), ["x.txt"], [b"Une \xc3\x89COLE \xe2\x80\x94 tr\xc3\xa8s na\xc3\xafve !"]
    )
    assert d.check("une école, TRÈS NAÏVE") == 1  # non-ASCII letters lowercased, the dash is a separator


def test_fields_select_the_evaluation_text() -> None:
    question_only = build(JSONL, fields=("question",))
    answer = ITEMS["math-002"]["answer"]
    assert question_only.check(answer) == 0
    assert question_only.check(ITEMS["math-002"]["question"]) > 0
    assert build(JSONL).check(answer) > 0  # every string value by default
    premise = ITEMS["nli-005"]["premise"]
    assert question_only.check(premise) == 0 and build(JSONL, fields=("premise",)).check(premise) > 0
    choices = " ".join(ITEMS["sci-001"]["choices"])  # a list value: its strings, in order
    assert build(JSONL, fields=("choices",)).check(choices) == len(words(choices)) - 12
    with pytest.raises(UsageError, match=r"benchmark.jsonl: no item has any of the fields questoin"):
        build(JSONL, fields=("questoin",))


def test_short_items_are_matched_whole_or_counted_unchecked() -> None:
    d = build(JSONL, fields=("question", "answer"))
    # trivia-003 is 9 words: matched as a whole; trivia-004 (4 words) is too short to check, and so is
    # nli-005, which has neither field
    assert d.stats["whole_items"] == 1 and d.stats["short_items"] == 2 and d.stats["items"] == 6
    assert d.check("Quiz: which river flows through the city of Vienna?\n\nDanube!") == 1
    assert d.check("which river flows through the city of Vienna? The Rhine") == 0  # 8 of its 9 words
    assert d.check("The capital of Peru? Lima.") == 0
    strict = build(JSONL, fields=("question", "answer"), min_item_words=13)
    assert strict.stats["whole_items"] == 0 and strict.stats["short_items"] == 3
    assert strict.check("which river flows through the city of Vienna Danube") == 0


def test_runs_stay_inside_one_text_of_a_batch(both: Decontaminator) -> None:
    first, second = " ".join(words(BOTTLE)[:12]), " ".join(words(BOTTLE)[12:])  # 12 words each
    hits, files = both.check_batch([first, second, SHAKESPEARE[:500], BOTTLE, ""])
    assert hits.tolist() == [0, 0, 0, 12, 0] and files.tolist() == [-1, -1, -1, 0, -1]
    assert [both.check(t) for t in (first + " " + second, LIGHTHOUSE)] == [12, len(words(LIGHTHOUSE)) - 12]


def test_gzip_and_json_inputs_read_like_plain_ones(tmp_path: Path) -> None:
    for source in (JSONL, TXT):
        (tmp_path / f"{source.name}.gz").write_bytes(gzip.compress(source.read_bytes()))
    (tmp_path / "benchmark.json").write_text(json.dumps(list(ITEMS.values())))
    (tmp_path / "one.json").write_text(json.dumps(ITEMS["sci-001"]))
    plain = build(JSONL, TXT)
    zipped = build(tmp_path / "benchmark.jsonl.gz", tmp_path / "reading.txt.gz")
    assert zipped.stats == plain.stats
    assert build(tmp_path / "benchmark.json").stats == build(JSONL).stats
    assert build(tmp_path / "one.json").stats["items"] == 1
    for page in (BOTTLE, LIGHTHOUSE, SHAKESPEARE[:3000]):
        assert zipped.check(page) == plain.check(page)
    assert build(tmp_path).stats["files"] == 4  # a folder: its evaluation files
    # a run in two files is reported in the first one named
    assert build(TXT, tmp_path / "reading.txt.gz").match(LIGHTHOUSE)[1] == storage.normalize(str(TXT))
    assert build(tmp_path / "reading.txt.gz", TXT).match(LIGHTHOUSE)[1].endswith("reading.txt.gz")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, r"no such evaluation file: .*missing.jsonl"),
        ("bad.jsonl", b'{"q": "fine"}\n\n{"q": "broken\n', r"bad.jsonl line 3: invalid JSON"),
        ("bad.json", b'[{"q": 1},\n{"q": }]', r"bad.json line 2: invalid JSON"),
        ("latin1.txt", "first\n\ncaf\xe9".encode("latin-1"), r"latin1.txt line 3: not UTF-8"),
        ("notgz.txt.gz", b"plain text", r"notgz.txt.gz: not a gzip file"),
        ("eval.csv", b"q,a\n", r"eval.csv: unknown file type; expected one of .jsonl"),
        ("empty_folder", b"", r"no .jsonl, .*files in .*empty_folder"),
    ],
)
def test_bad_inputs_are_usage_errors_naming_them(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if name == "empty_folder":
        path.mkdir()
        (path / "notes.md").write_text("not an evaluation file")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        build(path)


def test_settings_are_checked() -> None:
    with pytest.raises(UsageError, match="action must be 'drop' or 'mark'"):
        DecontamConfig(action="remove")
    with pytest.raises(UsageError, match="at least 1"):
        DecontamConfig(ngram=0)
    cfg = from_table(DecontamConfig, {"files": ["a.jsonl"], "fields": ["question"], "ngram": 8}, "filter")
    assert cfg.files == ("a.jsonl",) and cfg.fields == ("question",) and cfg.min_item_words == 8


def test_fingerprint_follows_the_files_bytes_and_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "evals.jsonl"
    shutil.copy(JSONL, path)
    before = build(path)
    assert build(path) is before  # one index per process while the files are unchanged
    assert build(path, action="mark").fingerprint != before.fingerprint
    path.write_text(JSONL.read_text().replace("Vienna", "Bratislava"))
    after = build(path)
    assert after.fingerprint != before.fingerprint and after.check(BOTTLE) == before.check(BOTTLE)
    # all fields by default: the trivia item's id words are part of it, so its question is no whole item
    assert after.check("Which river flows through the city of Bratislava? Danube!") == 0
    again = Decontaminator(
        DecontamConfig(files=(str(path),)), [storage.normalize(str(path))], [path.read_bytes()]
    )
    assert again.fingerprint == after.fingerprint


def test_evaluation_files_on_s3(s3_url: str) -> None:
    storage.write_bytes(f"{s3_url}/evals/benchmark.jsonl.gz", gzip.compress(JSONL.read_bytes()))
    storage.write_bytes(f"{s3_url}/evals/reading.txt", TXT.read_bytes())
    d = build(f"{s3_url}/evals")
    assert d.files == (f"{s3_url}/evals/benchmark.jsonl.gz", f"{s3_url}/evals/reading.txt")
    assert d.stats == build(JSONL, TXT).stats
    assert d.match(LIGHTHOUSE) == (len(words(LIGHTHOUSE)) - 12, f"{s3_url}/evals/reading.txt")
