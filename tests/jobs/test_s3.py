"""The whole pipeline with every path on s3:// (the session's SeaweedFS), as `tokenmill run` runs it."""

from __future__ import annotations

import json
import re

import pytest

from pipeline import storage
from tests.conftest import DATA, run_tokenmill
from tests.jobs.conftest import tiny_run_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_head")]


def test_run_with_every_path_on_s3(s3_url, tmp_path):
    storage.write_bytes(f"{s3_url}/crawl/sample-20.warc.gz", (DATA / "sample-20.warc.gz").read_bytes())
    config = tmp_path / "s3.toml"
    config.write_text(tiny_run_config(f"{s3_url}/crawl/", f"{s3_url}/run", vocab_size=400, max_steps=6))
    done = run_tokenmill("run", str(config))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {s3_url}/run/report.json" in done.stdout
    report = json.loads(storage.read_bytes(f"{s3_url}/run/report.json"))
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["extract"]["docs_out"] >= 15 and stages["pretrain"]["steps"] == 6
    assert report["shards"]["all"]["num_docs"] == stages["dedup"]["docs_out"]
    files = storage.list_tree(f"{s3_url}/run")
    for name in (
        "shards/manifest.json",
        "shards/tokenizer.json",
        "tokenizer/tokenizer.json",
        "pretrain/ckpt.pt",
    ):
        assert name in files, sorted(files)
    assert not [n for n in files if ".tmp-" in n]
    again = run_tokenmill("run", str(config))  # everything resumes from s3
    assert again.returncode == 0, again.stderr[-3000:]
    line = again.stdout.split("tokenize:", 1)[1].splitlines()[0]
    assert re.search(r"\((\d+) of \1 tasks already complete\)", line), line
    assert not [n for n in files if n.startswith("shards/_work/") and n.endswith(".bin")]  # work files go
