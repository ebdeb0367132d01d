"""Shard folders and run folders on S3 (the session's SeaweedFS): cached, checked, staged, resumed exactly."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train.remote
from pipeline import storage
from pipeline.config import UsageError
from tests.train.conftest import tiny_config
from train.checkpoint import load_checkpoint
from train.generate import generate_text
from train.pretrain import pretrain
from train.remote import VERIFIED_FILE, RunFolder, cache_folder, local_shards

REPO = Path(__file__).resolve().parents[2]


def upload_folder(folder: Path, url: str) -> str:
    for path in folder.iterdir():
        storage.write_bytes(storage.join(url, path.name), path.read_bytes())
    return url


@pytest.fixture
def s3_shards(s3_url: str, shard_dir: Path) -> str:
    return upload_folder(shard_dir, f"{s3_url}/shards")


def test_shard_cache_is_checked_once_and_kept(
    s3_shards: str, shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(tmp_path / "cache")
    folder = local_shards(s3_shards, cache)
    assert folder == cache_folder(cache, "shards", s3_shards) and folder.startswith(cache)
    names = sorted(p.name for p in shard_dir.iterdir())
    assert sorted(os.listdir(folder)) == sorted([*names, VERIFIED_FILE])
    for name in names:
        assert (Path(folder) / name).read_bytes() == (shard_dir / name).read_bytes()
    assert local_shards(str(shard_dir), cache) == str(shard_dir)  # a local folder is used in place

    hashed: list[str] = []
    real_sha256 = train.remote.sha256_file
    monkeypatch.setattr(train.remote, "sha256_file", lambda p: hashed.append(p) or real_sha256(p))
    mtimes = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in names}
    assert local_shards(s3_shards, cache) == folder
    assert hashed == []  # recorded size + manifest sha256: neither downloaded nor hashed again
    assert {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in names} == mtimes

    damaged = Path(folder) / "train-00001.arrow"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # another size: checked, then downloaded again
    local_shards(s3_shards, cache)
    assert damaged.read_bytes() == (shard_dir / "train-00001.arrow").read_bytes()
    assert hashed == [str(damaged)]


def test_a_shard_that_differs_from_the_manifest_twice_is_one_error(s3_shards: str, tmp_path: Path) -> None:
    storage.write_bytes(f"{s3_shards}/val-00000.arrow", b"not the shard the manifest describes")
    with pytest.raises(UsageError, match=r"val-00000.arrow: sha256 .* on two downloads") as err:
        local_shards(s3_shards, str(tmp_path / "cache"))
    assert "\n" not in str(err.value)
    storage.remove([f"{s3_shards}/val-00000.arrow"])
    with pytest.raises(UsageError, match="named in manifest.json but does not exist"):
        local_shards(s3_shards, str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"no manifest.json in s3://.*/nothing"):
        local_shards(s3_shards.replace("/shards", "/nothing"), str(tmp_path / "cache"))


def test_pretrain_s3_to_s3_resumes_exactly_and_generates(
    s3_url: str, s3_shards: str, shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(max_steps=12, lr_decay_steps=12, dropout=0.1, checkpoint_interval=4, eval_interval=4)
    full = pretrain(str(shard_dir), str(tmp_path / "full"), cfg, progress=False)

    run_url, cache = f"{s3_url}/run", str(tmp_path / "cache")
    first = pretrain(
        s3_shards, run_url, tiny_config(**{**cfg.to_dict(), "max_steps": 8}), progress=False, cache_dir=cache
    )
    assert first["checkpoint"] == f"{run_url}/ckpt.pt" and first["step"] == 8
    names = ["ckpt-0000004.pt", "ckpt-0000008.pt", "ckpt.pt", "metrics.jsonl", "tokenizer.json"]
    assert sorted(storage.list_tree(run_url)) == names
    with pytest.raises(UsageError, match="--resume"):
        pretrain(s3_shards, run_url, cfg, progress=False, cache_dir=cache)

    # Resume on "another machine": an empty cache, so the checkpoint and the shards come from S3.
    other_cache = str(tmp_path / "other-cache")
    with caplog.at_level(logging.INFO):
        split = pretrain(s3_shards, run_url, cfg, resume=True, progress=False, cache_dir=other_cache)
    assert "resuming" in caplog.text
    assert split["step"] == full["step"] == 12 and split["steps_trained"] == 4
    assert split["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert split["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)

    # the last two numbered checkpoints stay, ckpt.pt is the newest (copied on the server, not uploaded)
    assert sorted(n for n in storage.list_tree(run_url) if n.startswith("ckpt")) == [
        "ckpt-0000008.pt",
        "ckpt-0000012.pt",
        "ckpt.pt",
    ]
    tree = storage.list_tree(run_url)
    assert tree["ckpt.pt"].size == tree["ckpt-0000012.pt"].size
    staged = RunFolder(run_url, str(tmp_path / "check"))
    assert staged.pull("ckpt.pt", "metrics.jsonl", "tokenizer.json") == []
    ckpt = load_checkpoint(staged.file("ckpt.pt"))
    assert ckpt["step"] == 12
    assert ckpt["data"]["dir"] == s3_shards  # the URL, not the cache path
    manifest = (shard_dir / "manifest.json").read_bytes()
    assert ckpt["data"]["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    reference = load_checkpoint(str(tmp_path / "full"))["model"]
    for name, value in reference.items():
        torch.testing.assert_close(ckpt["model"][name], value, rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in Path(staged.file("metrics.jsonl")).read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").open()]

    text = generate_text(run_url, "ROMEO:", max_new_tokens=12, temperature=0, cache_dir=cache)
    assert text and text == generate_text(
        f"{run_url}/ckpt.pt", "ROMEO:", max_new_tokens=12, temperature=0, cache_dir=other_cache
    )
    with pytest.raises(UsageError, match=r"no ckpt.pt in s3://.*/nope"):
        generate_text(f"{s3_url}/nope", "x", cache_dir=cache)


def test_cli_pretrain_and_generate_with_s3_folders(s3_url: str, s3_shards: str, tmp_path: Path) -> None:
    """The commands users run, configured by the standard AWS variables only (and TOKENMILL_CACHE)."""
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4"]
    run_url = f"{s3_url}/cli-run"
    base = [
        sys.executable,
        "-m",
        "jobs.pretrain",
        "--data",
        s3_shards,
        "--output",
        run_url,
        "--device",
        "cpu",
    ]
    proc = subprocess.run(
        [*base, *tiny, "--max-steps", "3"], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert f"output: {run_url}/ckpt.pt" in proc.stdout
    assert os.path.isdir(cache_folder(None, "runs", run_url))  # staged under $TOKENMILL_CACHE
    generate = [sys.executable, "-m", "jobs.generate", "--checkpoint", run_url, "--prompt", "KING:"]
    proc = subprocess.run(
        [*generate, "--temperature", "0", "--max-new-tokens", "5"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr


def test_a_mixture_of_an_s3_and_a_local_folder_resumes_exactly(
    s3_url: str, s3_shards: str, shard_dir: Path, shard_dir_b: Path, tmp_path: Path
) -> None:
    """`s3://bucket/shards:0.6`: the weight comes off the URL, the folder is a checked copy in the cache,
    and the checkpoint records the URL; resuming from an empty cache continues the same batches."""
    cfg = tiny_config(max_steps=8, lr_decay_steps=8, checkpoint_interval=4, eval_interval=4)
    local = pretrain([f"{shard_dir}:0.6", f"{shard_dir_b}:0.4"], str(tmp_path / "local"), cfg, progress=False)
    data = [f"{s3_shards}:0.6", f"{shard_dir_b}:0.4"]
    half = tiny_config(**{**cfg.to_dict(), "max_steps": 4})
    pretrain(data, f"{s3_url}/run", half, progress=False, cache_dir=str(tmp_path / "cache"))
    split = pretrain(data, f"{s3_url}/run", cfg, resume=True, progress=False, cache_dir=str(tmp_path / "c2"))
    assert split["loss"] == pytest.approx(local["loss"], rel=1e-5)
    # the same losses per source (named by their folders: shards0 locally, shards on S3)
    assert list(split["val_losses"].values()) == pytest.approx(list(local["val_losses"].values()), rel=1e-5)
    staged = RunFolder(f"{s3_url}/run", str(tmp_path / "check"))
    assert staged.pull("ckpt.pt") == []
    sources = load_checkpoint(staged.file("ckpt.pt"))["data"]["sources"]
    assert [(s["dir"], s["name"], s["weight"]) for s in sources] == [
        (s3_shards, "shards", 0.6),
        (str(shard_dir_b), shard_dir_b.name, 0.4),
    ]
