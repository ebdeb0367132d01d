"""Data-parallel pretraining with real processes: torchrun with 2 CPU processes on gloo (DDP and FSDP2) and
Ray Train's TorchTrainer with 2 workers submitted as a Ray job. Each must train on the same windows with the
same gradient as one process at the same global batch, so the loss is the same at every step, and a run
resumes exactly at any world size."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train.conftest import tiny_config
from train.checkpoint import load_checkpoint
from train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# every step logged, so curves are compared step by step; grad_accum 2 splits over 2 processes
FLAGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "2"]
FLAGS += ["--grad-accum", "2", "--log-interval", "1", "--eval-interval", "5", "--checkpoint-interval", "5"]
FLAGS += ["--device", "cpu", "--compile", "false", "--dtype", "float32"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores


def torchrun(*args: str, procs: int = 2) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, f"--nproc-per-node={procs}", "--master-addr=127.0.0.1", f"--master-port={_free_port()}"]
    done = subprocess.run(
        [*cmd, "-m", "jobs.pretrain", *FLAGS, *args], cwd=REPO, env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def one_process(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jobs.pretrain", *FLAGS, *args]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_curve(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(1, len(ra) + 1))
    for x, y in zip(ra, rb, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5), x["step"]
        assert x["lr"] == y["lr"]
        assert ("val_loss" in x) == ("val_loss" in y)
        if "val_loss" in x:
            assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
    wa, wb = load_checkpoint(str(a))["model"], load_checkpoint(str(b))["model"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory, shard_dir: Path) -> Path:
    """20 steps in one process: the curve the distributed runs must reproduce."""
    run = tmp_path_factory.mktemp("single") / "run"
    one_process("--data", str(shard_dir), "--output", str(run), "--max-steps", "20")
    return run


def test_ddp_two_processes_follow_the_single_process_curve(
    tmp_path: Path, shard_dir: Path, single_run: Path
) -> None:
    done = torchrun("--data", str(shard_dir), "--output", str(tmp_path / "ddp"), "--max-steps", "20")
    assert "2 processes (ddp)" in done.stdout
    assert done.stdout.count("pretrain: step 20") == 1  # rank 0 speaks for both
    assert_same_curve(tmp_path / "ddp", single_run)
    assert load_checkpoint(str(tmp_path / "ddp"))["world_size"] == 2


def test_ddp_resume_is_exact_and_works_at_another_world_size(
    tmp_path: Path, shard_dir: Path, single_run: Path
) -> None:
    """`--max-steps 10` then `--max-steps 20 --resume` under torchrun equals 20 straight; and a checkpoint
    of 2 processes resumes in 1 (the global batch does not depend on the world size)."""
    run = tmp_path / "split"
    torchrun("--data", str(shard_dir), "--output", str(run), "--max-steps", "10")
    torchrun("--data", str(shard_dir), "--output", str(run), "--max-steps", "20", "--resume")
    assert_same_curve(run, single_run)

    other = tmp_path / "two-then-one"
    torchrun("--data", str(shard_dir), "--output", str(other), "--max-steps", "10")
    one_process("--data", str(shard_dir), "--output", str(other), "--max-steps", "20", "--resume")
    assert_same_curve(other, single_run)


def test_fsdp2_shards_the_model_and_follows_the_same_curve(
    tmp_path: Path, shard_dir: Path, single_run: Path
) -> None:
    """FSDP2 (fully_shard) on CPU over gloo: sharded parameters, the same training; its checkpoint holds
    the whole model and resumes under DDP."""
    run = tmp_path / "fsdp"
    done = torchrun("--data", str(shard_dir), "--output", str(run), "--max-steps", "10", "--strategy", "fsdp")
    assert "2 processes (fsdp)" in done.stdout
    ckpt = load_checkpoint(str(run))
    assert ckpt["model"]["embed.weight"].shape[0] == 512  # gathered whole, not rank 0's shard
    torchrun("--data", str(shard_dir), "--output", str(run), "--max-steps", "20", "--resume")
    assert_same_curve(run, single_run)


def test_grad_accum_must_split_over_the_processes(tmp_path: Path, shard_dir: Path) -> None:
    cmd = [TORCHRUN, "--nproc-per-node=2", "--master-addr=127.0.0.1", f"--master-port={_free_port()}"]
    args = ["-m", "jobs.pretrain", *FLAGS, "--grad-accum", "3", "--data", str(shard_dir)]
    done = subprocess.run(
        [*cmd, *args, "--output", str(tmp_path / "r")], cwd=REPO, env=_env(), capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "tokenmill pretrain: error: grad_accum 3 does not split over 2 processes" in done.stderr
    assert "[rank0]: Traceback" not in done.stderr  # our one line; torchrun then reports the exit status


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="FSDP2 with bf16 mixed precision on NCCL needs 2 CUDA GPUs"
)
def test_fsdp2_on_two_gpus_in_bf16(tmp_path: Path, shard_dir: Path) -> None:
    common = ["--data", str(shard_dir), "--max-steps", "20", "--dtype", "bfloat16", "--device", "auto"]
    torchrun(*common, "--output", str(tmp_path / "fsdp"), "--strategy", "fsdp")
    torchrun(*common, "--output", str(tmp_path / "ddp"))
    fsdp, ddp = rows(tmp_path / "fsdp"), rows(tmp_path / "ddp")
    assert fsdp[-1]["loss"] == pytest.approx(ddp[-1]["loss"], rel=2e-2)  # bf16: close, not bitwise


def test_ray_job_submit_trains_with_two_ray_train_workers(
    ray_head: dict[str, str], tmp_path: Path, shard_dir: Path, single_run: Path
) -> None:
    """The documented cluster path: `ray job submit --working-dir . -- python -m jobs.pretrain
    --num-workers 2 ...` runs TorchTrainer with 2 CPU workers; same curve as one process."""
    run = tmp_path / "ray"
    args = [*FLAGS, "--data", str(shard_dir), "--output", str(run), "--max-steps", "20", "--num-workers", "2"]
    cmd = [ray_head["ray"], "job", "submit", "--address", ray_head["dashboard"], "--working-dir", str(REPO)]
    deadline = time.monotonic() + 180  # a fresh head's job agent may not be up yet
    while True:
        done = subprocess.run(
            [*cmd, "--", "python", "-m", "jobs.pretrain", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pretrain: step 20" in done.stdout and "2 processes (ddp)" in done.stdout
    assert_same_curve(run, single_run)


def test_in_process_loop_is_world_size_one(tmp_path: Path, shard_dir: Path) -> None:
    summary = pretrain(str(shard_dir), str(tmp_path / "r"), tiny_config(max_steps=2), progress=False)
    assert summary["world_size"] == 1 and summary["strategy"] is None


def test_sigterm_to_torchrun_stops_every_process_at_one_step_and_saves(
    tmp_path: Path, shard_dir: Path
) -> None:
    """torchrun passes SIGTERM on; the processes agree on the step to stop at and rank 0 saves it."""
    import signal

    run = tmp_path / "run"
    cmd = [TORCHRUN, "--nproc-per-node=2", "--master-addr=127.0.0.1", f"--master-port={_free_port()}"]
    args = [*FLAGS, "--checkpoint-interval", "100000", "--eval-interval", "100000"]
    proc = subprocess.Popen(
        [
            *cmd,
            "-m",
            "jobs.pretrain",
            *args,
            "--data",
            str(shard_dir),
            "--output",
            str(run),
            "--max-steps",
            "100000",
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "stopped by signal 15 at step" in err  # rank 0's note (torchrun itself then exits non-zero)
    step = load_checkpoint(str(run))["step"]
    assert 5 <= step < 100000
    assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
    done = torchrun("--data", str(shard_dir), "--output", str(run), "--max-steps", str(step + 2), "--resume")
    assert f"pretrain: step {step + 2}" in done.stdout
