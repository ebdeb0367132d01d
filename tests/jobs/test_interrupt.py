"""SIGKILL in the middle of a stage (the command and the local Ray it started), then the same command again.

Nothing a killed run leaves may be mistaken for output: the rerun's documents are byte for byte those of
an uninterrupted run, and a shard folder being retokenized never holds a manifest its shards contradict.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.extract import ExtractConfig
from pipeline.stages import extract
from tests.conftest import DATA, REPO, run_tokenmill, without_ray_address
from tokenizer.shards import MANIFEST_FILE, TOKENIZER_FILE, verify_shards
from tokenizer.tokenize import TokenizeConfig, tokenize
from tokenizer.train import TokenizerConfig, train_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_head")]
COPIES = 6


@pytest.fixture(scope="module")
def warcs(tmp_path_factory) -> Path:
    """Six WARC files (copies of the 20-page fixture): six tasks, a few seconds each."""
    folder = tmp_path_factory.mktemp("warcs")
    for i in range(COPIES):
        shutil.copyfile(DATA / "sample-20.warc.gz", folder / f"crawl-{i}.warc.gz")
    return folder


def start_tokenmill(*args: str) -> subprocess.Popen:
    """The command as a user starts it without a cluster: it starts (and owns) a local Ray of its own."""
    exe = Path(sys.executable).parent / "tokenmill"
    return subprocess.Popen(
        [str(exe), *args],
        cwd=REPO,
        env=without_ray_address(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL the command and every process it started (its local Ray) once `ready()` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the command finished before it could be interrupted"
        assert time.monotonic() < deadline, "the command never got far enough to be interrupted"
        time.sleep(0.05)
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def records(folder: Path) -> list[Path]:
    return list((folder / "completions").glob("*.json")) if (folder / "completions").exists() else []


def document_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*.parquet")
        if "completions" not in p.parts and "stats" not in p.parts
    }


def test_killed_extract_then_rerun_gives_byte_identical_documents(warcs, tmp_path):
    whole = extract([str(warcs)], str(tmp_path / "whole"), ExtractConfig())
    assert whole.complete and whole.tasks == COPIES

    out = tmp_path / "killed"
    kill_when(start_tokenmill("extract", str(warcs), "--output", str(out)), lambda: len(records(out)) >= 1)
    assert 1 <= len(records(out)) < COPIES  # killed mid-run: some tasks committed, others not

    rerun = run_tokenmill("extract", str(warcs), "--output", str(out))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "tasks already complete" in rerun.stdout
    assert document_files(out) == document_files(tmp_path / "whole")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    merged = json.loads((out / "stats" / "merged.json").read_text())
    assert merged["complete"] and merged["counters"]["docs_out"] == whole.stats.counters["docs_out"]


def test_retokenizing_never_leaves_a_manifest_its_shards_contradict(warcs, tmp_path):
    docs = tmp_path / "docs"
    extract([str(warcs)], str(docs), ExtractConfig())
    tok_a, tok_b = str(tmp_path / "a" / "tokenizer.json"), str(tmp_path / "b" / "tokenizer.json")
    train_tokenizer(str(docs), tok_a, TokenizerConfig(vocab_size=400))
    train_tokenizer(str(docs), tok_b, TokenizerConfig(vocab_size=700))
    shards = tmp_path / "shards"
    tokenize(str(docs), tok_a, str(shards), TokenizeConfig())
    assert not verify_shards(str(shards))
    first = set(records(shards))

    def manifest_is_true_or_absent() -> None:
        if (shards / MANIFEST_FILE).exists():
            manifest = json.loads((shards / MANIFEST_FILE).read_text())
            assert not verify_shards(str(shards))
            tok = hashlib.sha256((shards / TOKENIZER_FILE).read_bytes()).hexdigest()
            assert manifest["tokenizer"]["sha256"] == tok

    proc = start_tokenmill("tokenize", str(docs), "--tokenizer", tok_b, "--output", str(shards))
    kill_when(proc, lambda: len(set(records(shards)) - first) >= 1)
    manifest_is_true_or_absent()
    assert not (shards / MANIFEST_FILE).exists()  # some shards are redone already: no manifest may stand

    tokenize(str(docs), tok_b, str(shards), TokenizeConfig())
    manifest = json.loads((shards / MANIFEST_FILE).read_text())
    assert manifest["tokenizer"]["sha256"] == hashlib.sha256(Path(tok_b).read_bytes()).hexdigest()
    assert manifest["tokenizer"]["vocab_size"] == 700
    manifest_is_true_or_absent()
    listed = {s["file"] for split in manifest["splits"].values() for s in split}
    assert {p.name for p in shards.glob("*.arrow")} == listed  # nothing unlisted beside them
