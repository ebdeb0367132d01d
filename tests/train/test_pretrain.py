"""The pretrain loop on real text: it learns, logs, checkpoints, refuses to overwrite, and resumes exactly."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from pipeline.config import UsageError
from tests.train.conftest import tiny_config
from train.checkpoint import load_checkpoint
from train.pretrain import lr_at, pretrain


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_metrics_are_logged(trained_run: Path) -> None:
    metrics = rows(trained_run)
    assert [r["step"] for r in metrics] == list(range(5, 101, 5))
    for r in metrics:
        assert {"step", "loss", "lr", "tokens_per_s", "elapsed_s"} <= set(r)
        assert r["tokens_per_s"] > 0
    evals = [r for r in metrics if "val_loss" in r]
    assert [r["step"] for r in evals] == list(range(10, 101, 10))
    # From ln(512) = 6.2 (a uniform guess) past the ~5.1 plateau of unigram statistics, on held-out text.
    assert metrics[0]["loss"] > 5.5
    assert evals[-1]["val_loss"] < min(5.0, evals[0]["val_loss"] - 0.3)


def test_run_folder_holds_everything_generate_and_resume_need(trained_run: Path, shard_dir: Path) -> None:
    assert (trained_run / "tokenizer.json").read_bytes() == (shard_dir / "tokenizer.json").read_bytes()
    ckpt = load_checkpoint(str(trained_run))
    assert ckpt["step"] == 100
    assert {"model", "optimizer", "model_config", "pretrain_config", "rng", "data"} <= set(ckpt)
    assert ckpt["model_config"]["n_layer"] == 1 and ckpt["pretrain_config"]["max_steps"] == 100
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert ckpt["data"]["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
    assert ckpt["data"]["dir"] == os.path.abspath(shard_dir)
    assert sorted(p.name for p in trained_run.iterdir()) == ["ckpt.pt", "metrics.jsonl", "tokenizer.json"]


def test_existing_checkpoint_is_not_overwritten(trained_run: Path, shard_dir: Path) -> None:
    before = (trained_run / "ckpt.pt").stat().st_mtime_ns
    with pytest.raises(UsageError, match="--resume"):
        pretrain(str(shard_dir), str(trained_run), tiny_config(), progress=False)
    assert (trained_run / "ckpt.pt").stat().st_mtime_ns == before


def test_resume_continues_exactly(tmp_path: Path, shard_dir: Path) -> None:
    # Dropout on, so the restored torch RNG matters too. The cosine ends at step 20 in both runs.
    cfg = tiny_config(max_steps=20, lr_decay_steps=20, dropout=0.1, checkpoint_interval=5)
    full = pretrain(str(shard_dir), str(tmp_path / "full"), cfg, progress=False)
    pretrain(
        str(shard_dir),
        str(tmp_path / "split"),
        tiny_config(**{**cfg.to_dict(), "max_steps": 10}),
        progress=False,
    )
    with open(tmp_path / "split" / "metrics.jsonl", "a") as f:
        f.write('{"step": 12, "loss": 0.0}\n{"step": 1')  # logged after the checkpoint, then cut by a crash
    split = pretrain(str(shard_dir), str(tmp_path / "split"), cfg, resume=True, progress=False)
    assert split["step"] == full["step"] == 20 and split["steps_trained"] == 10
    assert split["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert split["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)
    a = load_checkpoint(str(tmp_path / "full"))["model"]
    b = load_checkpoint(str(tmp_path / "split"))["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    # metrics.jsonl reads as one run: every step logged once, in order.
    assert [r["step"] for r in rows(tmp_path / "split")] == [r["step"] for r in rows(tmp_path / "full")]
    losses = [r["loss"] for r in rows(tmp_path / "full")]
    assert [r["loss"] for r in rows(tmp_path / "split")] == pytest.approx(losses, rel=1e-5)


def test_resume_refuses_another_model_shape_or_no_checkpoint(
    tmp_path: Path, trained_run: Path, shard_dir: Path
) -> None:
    with pytest.raises(UsageError, match="n_embd"):
        pretrain(
            str(shard_dir),
            str(trained_run),
            tiny_config(n_layer=1, n_embd=32, max_steps=120),
            resume=True,
            progress=False,
        )
    with pytest.raises(UsageError, match="nothing to resume"):
        pretrain(str(shard_dir), str(tmp_path / "fresh"), tiny_config(), resume=True, progress=False)


def test_resume_at_max_steps_trains_nothing(tmp_path: Path, shard_dir: Path) -> None:
    cfg = tiny_config(max_steps=5, eval_interval=5)
    first = pretrain(str(shard_dir), str(tmp_path / "r"), cfg, progress=False)
    again = pretrain(str(shard_dir), str(tmp_path / "r"), cfg, resume=True, progress=False)
    assert again["steps_trained"] == 0 and again["loss"] == first["loss"]


def test_short_val_split_skips_eval_with_a_note(
    tmp_path: Path, shard_dir_no_val: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        summary = pretrain(
            str(shard_dir_no_val), str(tmp_path / "r"), tiny_config(max_steps=10), progress=False
        )
    assert "skipping evaluation" in caplog.text
    assert summary["val_loss"] is None
    assert all("val_loss" not in r for r in rows(tmp_path / "r"))


def test_lr_warms_up_then_decays_to_min() -> None:
    cfg = tiny_config(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, cfg) for s in range(120)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101], strict=True))
    assert lrs[100:] == [1e-4] * 20
