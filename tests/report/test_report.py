"""`tokenmill report` on a run folder whose contents the fixture knows: every number checked against it."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pytest

from jobs import report as report_job
from report import collect, render_html
from report.documents import EXAMPLE_CHARS, spread_order
from report.html import SECTIONS
from report.sketch import ClusterSizes, LogHistogram, TopCounter
from tests.report.conftest import HOSTILE, build_run


@pytest.fixture(scope="module")
def full(run_folder):
    return collect([str(run_folder.path)], sample_docs=0)


def test_stage_counts_are_the_stages_own(full, run_folder):
    stages = {s["stage"]: s for s in full["stages"]}
    assert list(stages) == ["extract", "filter", "dedup", "train-tokenizer", "tokenize", "pretrain"]
    for stage, dropped in run_folder.expected.dropped.items():
        assert stages[stage]["dropped"] == dict(dropped)
    assert stages["filter"]["docs_in"] == stages["extract"]["docs_out"] + 1  # + the hostile page
    assert "scratch" not in stages  # _work/ holds work files, not a stage
    assert stages["pretrain"]["steps"] == 60


def test_languages_domains_and_lengths_of_kept_documents(full, run_folder):
    exp = run_folder.expected
    for stage in ("filter", "dedup"):
        assert full["documents"][stage]["kept"]["languages"] == dict(exp.kept_languages[stage])
    kept = full["documents"]["dedup"]["kept"]
    assert kept["sample"] == {
        "docs_read": 82,
        "docs_total": 82,
        "files_read": 2,
        "files_total": 2,
        "sampled": False,
    }
    assert dict(kept["top_domains"]) == dict(exp.domains)  # registered domains: sample.co.uk, c.de
    assert kept["chars"]["count"] == 82 and kept["text_bytes"] == exp.text_bytes
    assert sum(kept["chars"]["counts"]) == 82
    extract = full["documents"]["extract"]
    assert extract["kept"]["languages"] == {"(none)": 152}  # languages come from the filter stage
    assert extract["dropped"]["chars"]["zero"] == 8  # not_html records have no text


def test_drop_examples_are_the_first_three_per_reason_truncated(full):
    examples = full["documents"]["filter"]["dropped"]["examples"]
    assert set(examples) == {"gopher_quality.words", "language.fr", "c4.curly_bracket"}
    assert all(len(v) == 3 for k, v in examples.items() if k != "c4.curly_bracket")
    (hostile,) = examples["c4.curly_bracket"]
    assert hostile["text"].startswith(HOSTILE) and hostile["text"].endswith("…")
    assert len(hostile["text"]) == EXAMPLE_CHARS + 1
    assert hostile["url"] == "https://evil.example/<b>"


def test_cluster_sizes_and_tokens_are_exact(full, run_folder):
    exp = run_folder.expected
    dedup = full["dedup"]
    assert dedup["sizes"] == {str(k): v for k, v in sorted(exp.cluster_sizes.items())}
    assert dedup["sampled_fraction"] == 1.0 and dedup["documents_in_clusters"] == 10
    tokens = full["tokens"]
    assert tokens["lengths"]["count"] == len(exp.token_lengths) == tokens["totals"]["all"]["num_docs"]
    assert tokens["lengths"]["sum"] == sum(exp.token_lengths) == tokens["totals"]["all"]["num_tokens"]
    assert tokens["lengths"]["max"] == max(exp.token_lengths)
    assert [len(tokens["per_shard"]["train"]), len(tokens["per_shard"]["val"])] == [3, 1]
    bpt = tokens["bytes_per_token"]
    text_tokens = sum(exp.token_lengths) - len(exp.token_lengths)  # EOS not counted
    assert bpt["sampled"] is False and bpt["bytes_per_token"] == pytest.approx(exp.text_bytes / text_tokens)


def test_pretrain_curve(full):
    curve = full["pretrain"]
    assert len(curve["train"]) == 60 and [p[0] for p in curve["val"]] == [10, 20, 30, 40, 50, 60]


def test_report_is_json_and_small(full):
    text = json.dumps(full)
    assert len(text) < 60_000
    assert json.loads(text) == full


def test_sampling_reads_at_most_n_documents_and_says_so(run_folder):
    rep = collect([str(run_folder.path)], sample_docs=10)
    kept = rep["documents"]["dedup"]["kept"]
    assert kept["sample"]["docs_read"] == 10 and kept["sample"]["sampled"] is True
    assert sum(kept["languages"].values()) == 10
    dropped = rep["documents"]["filter"]["dropped"]
    assert dropped["sample"]["docs_read"] == 10
    assert rep["tokens"]["lengths"]["sample"]["shards_read"] == 1  # whole shards until 10 documents
    assert rep["dedup"]["sampled_fraction"] == 1.0  # clusters: every file, always
    assert "a sample of 10 of 82" in report_job.format_report(rep)


def test_bytes_per_token_without_text_bytes_is_measured_on_a_sample(run_folder, tmp_path):
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    run = tmp_path / "run"
    shutil.copytree(run_folder.path, run)
    merged = run / "shards" / "stats" / "merged.json"
    summary = json.loads(merged.read_text())
    del summary["counters"]["text_bytes"]  # a tokenize stage from before it counted bytes
    merged.write_text(json.dumps(summary))
    manifest = run / "shards" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(str(run_folder.path), "/moved/away"))
    (run / "dedup").rename(run / "dedup-moved")  # no folder of the manifest's input name: nothing to sample
    assert collect([str(run)])["tokens"]["bytes_per_token"] is None
    (run / "dedup-moved").rename(run / "dedup")  # the run moved as a whole: the folder found by its name
    bpt = collect([str(run)])["tokens"]["bytes_per_token"]
    tokenizer = Tokenizer.from_file(str(run / "shards" / "tokenizer.json"))
    parts = sorted((run / "dedup").glob("part-*.parquet"))
    texts = [t for f in parts for t in pq.read_table(f)["text"].to_pylist()]
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    assert bpt["sampled"] is True
    assert bpt["bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in texts) / tokens)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.refs: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset", "data", "poster"):
                self.refs.append(value or "")
            if name == "id":
                self.ids.append(value or "")


def test_html_is_self_contained_escaped_and_has_every_section(full):
    page = render_html(full)
    parser = _Page()
    parser.feed(page)
    assert parser.tags["script"] == 0 and parser.tags["img"] == 0 and parser.tags["link"] == 0
    assert all(r.startswith("#") for r in parser.refs), [r for r in parser.refs if not r.startswith("#")]
    assert not re.search(r"url\((?!#)", page)  # no CSS url() but references inside an inline SVG
    assert "<!DOCTYPE svg" not in page and "w3.org" not in page
    assert len(parser.ids) == len(set(parser.ids))  # every SVG's ids prefixed: none shared by two plots
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert parser.tags["svg"] == 6  # languages, characters, tokens, clusters, shards, loss
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;/pre&gt;" in page
    assert "https://evil.example/&lt;b&gt;" in page


def test_html_says_what_a_run_without_shards_lacks(run_folder, tmp_path):
    rep = collect([str(run_folder.path / "extract"), str(run_folder.path / "filter")])
    page = render_html(rep)
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "No token shards (manifest.json) in this run." in page
    assert "No dedup stage in this run." in page


def test_cli_writes_json_and_html_and_prints_both(run_folder, tmp_path, capsys):
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = report_job.main([str(run_folder.path), "-o", str(out_json), "--html", str(out_html)])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"report: {out_json}" in printed and f"report: {out_html}" in printed
    assert "bytes per token: " in printed and "top domains: example.org (63)" in printed
    assert json.loads(out_json.read_text())["stages"][0]["stage"] == "extract"
    assert out_html.read_text().startswith("<!DOCTYPE html>")


def test_cli_defaults_to_the_run_folder(tmp_path, capsys):
    run = build_run(tmp_path / "run", seed=1)
    assert report_job.main([str(run.path), "--sample-docs", "50"]) == 0
    assert (run.path / "report.json").exists() and (run.path / "report.html").exists()
    assert json.loads((run.path / "report.json").read_text())["sample_docs"] == 50


@pytest.mark.parametrize(
    "folder, message",
    [
        ("no/such/run", "no such folder: no/such/run"),
        ("EMPTY", "no stage outputs (stats/merged.json, manifest.json, metrics.jsonl) in"),
    ],
)
def test_a_folder_without_a_run_is_one_line_exit_2(folder, message, tmp_path, capsys):
    code = report_job.main([str(tmp_path) if folder == "EMPTY" else folder])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("tokenmill report: error:")


def test_a_negative_sample_is_refused_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        report_job.main([str(tmp_path), "--sample-docs", "-1"])
    assert exited.value.code == 2
    assert "argument --sample-docs: must be 0 or more, got -1" in capsys.readouterr().err


# --- the bounded structures -------------------------------------------------------------------------------


def test_spread_order_is_a_permutation_whose_prefixes_spread():
    for n in (1, 2, 5, 16, 1000):
        order = spread_order(n)
        assert sorted(order) == list(range(n))
    assert spread_order(8)[:4] == [0, 4, 2, 6]


def test_log_histogram_keeps_every_value_and_reads_quantiles_within_a_bin():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(5, int), rng.lognormal(7, 1.5, 10_000).astype(int) + 1, [10**9]])
    hist = LogHistogram()
    for chunk in np.array_split(values, 7):
        hist.add(chunk)
    got = hist.to_json()
    assert got["count"] == len(values) and got["zero"] == 5 and sum(got["counts"]) + 5 == len(values)
    assert got["max"] == 10**9 and got["sum"] == int(values.sum())  # past the last edge: in the last bin
    assert got["p50"] == pytest.approx(np.median(values), rel=0.27)


def test_top_counter_keeps_the_top_when_pruned():
    counter = TopCounter(cap=100)
    rng = np.random.default_rng(1)
    keys = [f"d{int(k)}" for k in rng.zipf(1.5, 20_000)]
    for i in range(0, len(keys), 500):
        counter.update(keys[i : i + 500])
    exact = Counter(keys)
    assert counter.pruned and len(counter.counter) <= 100
    assert [k for k, _ in counter.top(5)] == [k for k, _ in exact.most_common(5)]


def test_cluster_sizes_are_exact_for_the_clusters_sampled():
    rng = np.random.default_rng(2)
    members = [f"c{int(c)}" for c in rng.integers(0, 5000, 40_000)]
    sizes = ClusterSizes(cap=500)
    for i in range(0, len(members), 1000):
        sizes.update(members[i : i + 1000])
    exact = Counter(members)
    assert 0 < sizes.fraction < 1 and len(sizes.members) <= 500
    assert all(exact[c] == n for c, n in sizes.members.items())
    assert {c for c in exact if sizes.wanted(c)} == set(sizes.members)
