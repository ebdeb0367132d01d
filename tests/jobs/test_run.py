"""`tokenmill run CONFIG`, the demo's command, on the 20-page fixture with a very small model."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.conftest import DATA, run_tokenmill
from tests.jobs.conftest import tiny_run_config


@pytest.fixture(scope="module")
def run_dir(ray_head, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = out / "small.toml"
    config.write_text(tiny_run_config(str(DATA / "sample-20.warc.gz"), str(out / "run")))
    first = run_tokenmill("run", str(config))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out / "run", config, first


def test_run_prints_counts_report_and_generated_text(run_dir):
    out, _, done = run_dir
    for stage in ("extract:", "filter:", "dedup:", "train-tokenizer:", "tokenize:"):
        assert stage in done.stdout
    assert f"report: {out}/report.json" in done.stdout
    assert "generated (prompt 'The'):" in done.stdout
    generated = done.stdout.split("generated (prompt 'The'):\n", 1)[1]
    assert generated.startswith("The") and len(generated.strip()) > len("The")


def test_report_json_chains_stage_counts(run_dir):
    out, _, _ = run_dir
    report = json.loads((out / "report.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages)[:5] == ["extract", "filter", "dedup", "train-tokenizer", "tokenize"]
    assert stages["filter"]["docs_in"] == stages["extract"]["docs_out"]
    assert stages["dedup"]["docs_in"] == stages["filter"]["docs_out"]
    assert report["shards"]["all"]["num_docs"] == stages["dedup"]["docs_out"]
    assert stages["pretrain"]["steps"] == 12
    assert set(report["stage_wall_seconds"]) >= {"extract", "filter", "dedup", "tokenize", "pretrain"}
    rows = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "tflops"} <= set(rows[-1])
    # bits per byte: val loss in bits, spread over the val split's text bytes (from the manifest)
    val = json.loads((out / "shards" / "manifest.json").read_text())["totals"]["val"]
    expected = rows[-1]["val_loss"] * val["num_tokens"] / val["text_bytes"] / math.log(2)
    assert rows[-1]["val_bpb"] == pytest.approx(expected, rel=1e-4)


def test_report_of_the_run_reads_its_documents_and_shards(run_dir, tmp_path):
    """`tokenmill report` on a real run: every section, the documents and tokens the stages counted."""
    from jobs import report as report_job
    from report.html import SECTIONS

    out, _, _ = run_dir
    json_path, html_path = tmp_path / "report.json", tmp_path / "report.html"
    assert report_job.main([str(out), "--output", str(json_path), "--html", str(html_path)]) == 0
    report = json.loads(json_path.read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    docs = report["documents"]
    assert list(docs) == ["extract", "filter", "dedup"]
    for stage in docs:
        assert docs[stage]["kept"]["sample"]["docs_read"] == stages[stage]["docs_out"]
        assert docs[stage]["dropped"]["sample"]["docs_read"] == sum(stages[stage]["dropped"].values())
        assert set(docs[stage]["dropped"]["examples"]) == set(stages[stage]["dropped"])
    assert "en" in docs["filter"]["kept"]["languages"] and docs["dedup"]["kept"]["top_domains"]
    tokens = report["tokens"]
    assert tokens["lengths"]["count"] == report["shards"]["all"]["num_docs"]
    assert tokens["lengths"]["sum"] == report["shards"]["all"]["num_tokens"]
    assert 1 < tokens["bytes_per_token"]["bytes_per_token"] < 10
    assert len(report["pretrain"]["train"]) >= 3
    page = html_path.read_text()
    assert all(f'<section id="{sid}"><h2>' in page for sid, _ in SECTIONS)


def test_rerun_resumes_every_stage(run_dir):
    out, config, r = run_dir
    again = run_tokenmill("run", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    first = {stage: r.stdout.split(f"{stage}:", 1)[1].splitlines()[0] for stage in ("dedup", "tokenize")}
    for stage in ("extract", "filter", "dedup", "tokenize"):
        line = again.stdout.split(f"{stage}:", 1)[1].splitlines()[0]
        assert re.search(r"\((\d+) of \1 tasks already complete\)", line), line
    for stage, line in first.items():  # the counts of a skipped stage are the run's that made it
        assert line.split(" in ")[0] == again.stdout.split(f"{stage}:", 1)[1].split(" in ")[0]
    assert "(already trained from these documents with this config)" in again.stdout
    assert "resuming" in again.stdout


def test_changed_vocab_size_is_refused_then_redone_with_overwrite(run_dir, tmp_path):
    """A run folder never mixes configs: the change is named, and --overwrite redoes what it affects."""
    out, config, _ = run_dir
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("vocab_size = 512", "vocab_size = 520"))
    refused = run_tokenmill("run", str(changed))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "vocab_size 512 -> 520" in refused.stderr and "--overwrite" in refused.stderr
    before = json.loads((out / "shards" / "manifest.json").read_text())
    redone = run_tokenmill("run", str(changed), "--overwrite")
    assert redone.returncode == 0, redone.stdout[-3000:] + redone.stderr[-3000:]
    for stage in ("extract", "filter", "dedup"):  # upstream of the change: untouched
        assert "(1 of 1 tasks already complete)" in redone.stdout.split(f"{stage}:", 1)[1].splitlines()[0]
    after = json.loads((out / "shards" / "manifest.json").read_text())
    assert after["tokenizer"]["vocab_size"] == 520 != before["tokenizer"]["vocab_size"]
    assert after["tokenizer"]["sha256"] != before["tokenizer"]["sha256"]
    assert "pretrain: starting" in redone.stdout  # trained on other shards: started again, not resumed
    ckpt_vocab = json.loads((out / "report.json").read_text())["shards"]["vocab_size"]
    assert ckpt_vocab == 520


def test_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\ninputs = ["x"]\noutput = "y"\n[filtr]\n')
    done = run_tokenmill("run", str(bad))
    assert done.returncode == 2
    assert "unknown section(s) filtr" in done.stderr and "Traceback" not in done.stderr
