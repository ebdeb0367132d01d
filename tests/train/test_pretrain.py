"""The pretrain loop on real text: it learns, logs, checkpoints, refuses to overwrite, and resumes exactly;
on a mixture of folders too, refusing to resume on another mixture."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.config import UsageError
from tests.train.conftest import tiny_config
from train.checkpoint import load_checkpoint
from train.data_identity import data_change, data_sources
from train.pretrain import lr_at, pretrain


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_metrics_are_logged(trained_run: Path) -> None:
    metrics = rows(trained_run)
    assert [r["step"] for r in metrics] == list(range(5, 201, 5))
    for r in metrics:
        assert {"step", "loss", "lr", "tokens_per_s", "elapsed_s"} <= set(r)
        assert r["tokens_per_s"] > 0
    evals = [r for r in metrics if "val_loss" in r]
    assert [r["step"] for r in evals] == list(range(10, 201, 10))
    # From ln(512) = 6.2 (a uniform guess) past the ~5.4 plateau of unigram statistics, on held-out text.
    assert metrics[0]["loss"] > 5.5
    assert evals[-1]["val_loss"] < min(5.0, evals[0]["val_loss"] - 0.3)


def test_run_folder_holds_everything_generate_and_resume_need(trained_run: Path, shard_dir: Path) -> None:
    assert (trained_run / "tokenizer.json").read_bytes() == (shard_dir / "tokenizer.json").read_bytes()
    ckpt = load_checkpoint(str(trained_run))
    assert ckpt["step"] == 200
    assert {"model", "optimizer", "model_config", "pretrain_config", "rng", "data"} <= set(ckpt)
    assert ckpt["model_config"]["n_layer"] == 1 and ckpt["pretrain_config"]["max_steps"] == 200
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert ckpt["data"]["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
    assert ckpt["data"]["dir"] == os.path.abspath(shard_dir)
    names = ["ckpt-0000190.pt", "ckpt-0000200.pt", "ckpt.pt", "metrics.jsonl", "tokenizer.json"]
    assert sorted(p.name for p in trained_run.iterdir()) == names
    # the latest checkpoint is ckpt.pt: one file under two names, not two copies
    assert (trained_run / "ckpt.pt").samefile(trained_run / "ckpt-0000200.pt")


def test_keeps_the_last_n_checkpoints(tmp_path: Path, shard_dir: Path) -> None:
    cfg = tiny_config(max_steps=20, checkpoint_interval=5, keep_checkpoints=3)
    pretrain(str(shard_dir), str(tmp_path / "r"), cfg, progress=False)
    kept = sorted(p.name for p in (tmp_path / "r").glob("ckpt*.pt"))
    assert kept == ["ckpt-0000010.pt", "ckpt-0000015.pt", "ckpt-0000020.pt", "ckpt.pt"]
    assert [load_checkpoint(str(tmp_path / "r" / n))["step"] for n in kept] == [10, 15, 20, 20]
    # resumed from an earlier checkpoint, the run abandons the later ones it had written
    os.replace(tmp_path / "r" / "ckpt-0000010.pt", tmp_path / "r" / "ckpt.pt")
    pretrain(str(shard_dir), str(tmp_path / "r"), replace(cfg, max_steps=15), resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "r").glob("ckpt*.pt")) == ["ckpt-0000015.pt", "ckpt.pt"]
    only = tiny_config(max_steps=10, checkpoint_interval=5, keep_checkpoints=0)
    pretrain(str(shard_dir), str(tmp_path / "only"), only, progress=False)
    assert [p.name for p in (tmp_path / "only").glob("ckpt*.pt")] == ["ckpt.pt"]


def test_existing_checkpoint_is_not_overwritten(trained_run: Path, shard_dir: Path) -> None:
    before = (trained_run / "ckpt.pt").stat().st_mtime_ns
    with pytest.raises(UsageError, match="--resume"):
        pretrain(str(shard_dir), str(trained_run), tiny_config(), progress=False)
    assert (trained_run / "ckpt.pt").stat().st_mtime_ns == before


def test_resume_continues_exactly(tmp_path: Path, shard_dir: Path) -> None:
    # Dropout on, so the restored torch RNG matters too. The cosine ends at step 20 in both runs; every
    # step is logged, so the two runs are compared at every step.
    cfg = tiny_config(
        max_steps=20, lr_decay_steps=20, dropout=0.1, checkpoint_interval=5, log_interval=1, eval_interval=5
    )
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
            tiny_config(n_layer=1, n_embd=32, max_steps=220),
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


# ---------------------------------------------------------------------------------------------------------
# mixtures of shard folders


def test_mixture_logs_val_loss_per_source_and_their_weighted_mean(
    tmp_path: Path, shard_dir: Path, shard_dir_b: Path
) -> None:
    data = [f"{shard_dir}:0.75", f"{shard_dir_b}:0.25"]
    summary = pretrain(data, str(tmp_path / "r"), tiny_config(max_steps=10, eval_interval=5), progress=False)
    a, b = shard_dir.name, shard_dir_b.name
    evals = [r for r in rows(tmp_path / "r") if "val_loss" in r]
    assert [r["step"] for r in evals] == [5, 10]
    for r in evals:
        assert r["val_loss"] == pytest.approx(0.75 * r[f"val_loss/{a}"] + 0.25 * r[f"val_loss/{b}"], abs=2e-6)
    assert summary["val_losses"] == pytest.approx(
        {a: evals[-1][f"val_loss/{a}"], b: evals[-1][f"val_loss/{b}"]}
    )
    assert [(d["name"], d["weight"]) for d in summary["data"]] == [(a, 0.75), (b, 0.25)]
    ckpt = load_checkpoint(str(tmp_path / "r"))
    assert [(s["dir"], s["weight"]) for s in ckpt["data"]["sources"]] == [
        (str(shard_dir), 0.75),
        (str(shard_dir_b), 0.25),
    ]
    assert ckpt["pretrain_config"]["data"] == tuple(data)
    assert "dir" not in ckpt["data"]  # a mixture has no single folder


def test_mixture_resumes_exactly(tmp_path: Path, shard_dir: Path, shard_dir_b: Path) -> None:
    data = [f"{shard_dir}:0.6", f"{shard_dir_b}:0.4"]
    cfg = tiny_config(max_steps=12, lr_decay_steps=12, eval_interval=6, checkpoint_interval=6)
    full = pretrain(data, str(tmp_path / "full"), cfg, progress=False)
    pretrain(data, str(tmp_path / "split"), tiny_config(**{**cfg.to_dict(), "max_steps": 6}), progress=False)
    # the same mixture with weights written otherwise (normalised alike), from cfg.data
    same = tiny_config(**{**cfg.to_dict(), "data": (f"{shard_dir}:3", f"{shard_dir_b}:2")})
    split = pretrain(None, str(tmp_path / "split"), same, resume=True, progress=False)
    assert split["steps_trained"] == 6
    assert split["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert split["val_losses"] == pytest.approx(full["val_losses"], rel=1e-5)
    assert [r["loss"] for r in rows(tmp_path / "split")] == pytest.approx(
        [r["loss"] for r in rows(tmp_path / "full")], rel=1e-5
    )


@pytest.mark.parametrize(
    "data",
    [
        lambda a, b: [f"{a}:0.5", f"{b}:0.5"],  # other weights
        lambda a, b: [f"{b}:0.3", f"{a}:0.7"],  # other order: other batches
        lambda a, b: [str(a)],  # one folder of the two
    ],
)
def test_resume_with_another_mixture_is_refused_naming_both(
    tmp_path: Path, shard_dir: Path, shard_dir_b: Path, data
) -> None:
    run = str(tmp_path / "r")
    pretrain([f"{shard_dir}:0.7", f"{shard_dir_b}:0.3"], run, tiny_config(max_steps=2), progress=False)
    with pytest.raises(UsageError, match="trained on the mixture") as err:
        pretrain(data(shard_dir, shard_dir_b), run, tiny_config(max_steps=4), resume=True, progress=False)
    assert f"{shard_dir}:0.7 + {shard_dir_b}:0.3" in str(err.value) and "\n" not in str(err.value)


def test_a_single_folder_run_records_its_folder_as_before(trained_run: Path, shard_dir: Path) -> None:
    data = load_checkpoint(str(trained_run))["data"]
    assert data["dir"] == data["sources"][0]["dir"] == str(shard_dir)
    assert (
        data["sources"][0]["weight"] == 1.0
        and data["manifest_sha256"] == data["sources"][0]["manifest_sha256"]
    )


def test_data_change_reads_checkpoints_from_before_mixtures(shard_dir: Path, shard_dir_b: Path) -> None:
    now = data_sources(str(shard_dir))
    legacy = {
        "dir": "/elsewhere/shards",
        "manifest_sha256": now[0]["manifest_sha256"],
        "tokenizer_sha256": "x",
    }
    assert data_change(legacy, now) is None  # moved, same manifest: the same data
    assert "another manifest.json" in data_change({**legacy, "manifest_sha256": "0" * 64}, now)
    assert "mixture" in data_change(legacy, data_sources([str(shard_dir), str(shard_dir_b)]))


def test_mfu_is_logged_against_the_given_peak(tmp_path: Path, shard_dir: Path) -> None:
    cfg = tiny_config(max_steps=4, log_interval=2, peak_tflops=0.5)
    pretrain(str(shard_dir), str(tmp_path / "r"), cfg, progress=False)
    for row in rows(tmp_path / "r"):
        assert row["mfu"] == pytest.approx(row["tflops"] / 0.5, abs=2e-4)  # both rounded to 4 places
    pretrain(str(shard_dir), str(tmp_path / "cpu"), tiny_config(max_steps=2, log_interval=1), progress=False)
    assert all("mfu" not in row for row in rows(tmp_path / "cpu"))  # no known peak for a CPU
