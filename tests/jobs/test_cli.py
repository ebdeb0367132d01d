"""The `tokenmill` command as users meet it: help, and one clear line for their mistakes."""

from __future__ import annotations

import pytest

from tests.conftest import run_tokenmill

STAGES = [
    "run",
    "extract",
    "filter",
    "dedup",
    "train-tokenizer",
    "tokenize",
    "report",
    "pretrain",
    "generate",
]


def test_top_level_help_lists_every_stage():
    done = run_tokenmill("--help")
    assert done.returncode == 0
    for stage in STAGES:
        assert f"  {stage} " in done.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage):
    done = run_tokenmill(stage, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: tokenmill {stage}")


@pytest.mark.parametrize(
    "args, message",
    [
        (["bogus"], "unknown command 'bogus'"),
        (["extract", "no/such.warc.gz", "--output", "x"], "no such input: no/such.warc.gz"),
        (["extract", "README.md"], "the following arguments are required: --output"),
        (["filter", "no/such/dir", "--output", "x"], "no such document folder: no/such/dir"),
        (["tokenize", "no/such/dir", "--tokenizer", "no.json", "--output", "x"], "no such tokenizer file"),
        (["tokenize", "x", "--tokenizer", "README.md", "-o", "x"], "README.md is not a tokenizers JSON file"),
        (["train-tokenizer", "x", "--output", "t.json", "--vocab-size", "100"], "at least 262"),
        (["filter", "README.md", "--output", "x"], "README.md is not a tokenmill stage output"),
        (["report", "no/such/run"], "no such folder: no/such/run"),
        (["run", "no/such.toml"], "no such config file: no/such.toml"),
    ],
)
def test_mistakes_give_one_line_and_exit_2(args, message):
    done = run_tokenmill(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len([line for line in lines if "error:" in line]) == 1 and "error:" in lines[-1]
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1])  # argparse's usage, then one line


def test_a_stage_reads_its_table_of_a_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[extract]\ntime_limit_s = 'soon'\n")
    done = run_tokenmill(
        "extract", "tests/data/sample-20.warc.gz", "--output", str(tmp_path / "o"), "--config", str(config)
    )
    assert done.returncode == 2 and "[extract] time_limit_s must be float, got str 'soon'" in done.stderr
    config.write_text("[filter]\nlanguages = ['en']\n")
    done = run_tokenmill("filter", str(tmp_path), "--output", str(tmp_path / "f"), "--config", str(config))
    known = "[filter] has unknown key(s) languages; known: unicode_repair, url, language"
    assert done.returncode == 2 and known in done.stderr
