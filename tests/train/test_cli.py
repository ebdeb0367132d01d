"""`tokenmill pretrain` / `tokenmill generate` argument handling: mistakes are one line on stderr, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.generate import main as generate_main
from jobs.pretrain import build_parser
from jobs.pretrain import main as pretrain_main

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--device",
    "cpu",
]


def one_line_error(capsys: pytest.CaptureFixture[str], prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.prog == "tokenmill pretrain"
    with pytest.raises(SystemExit) as exit_:
        pretrain_main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--data",
        "--output",
        "--max-steps",
        "--seed",
        "--resume",
        "--config",
        "--n-layer",
        "--n-head",
        "--n-embd",
        "--block-size",
        "--batch-size",
        "--lr",
        "--device",
        "--depth",
        "--grad-accum",
        "--dtype",
        "--compile",
        "--strategy",
        "--keep-checkpoints",
        "--num-workers",
    ):
        assert flag in text


def test_missing_data_folder_or_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pretrain_main(["--data", str(tmp_path / "nope"), "--output", str(tmp_path / "run")]) == 2
    assert "does not exist" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    assert "manifest.json" in one_line_error(capsys, "tokenmill pretrain")


def test_bad_config_values(tmp_path: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "typo.toml"
    toml.write_text("[model]\nn_layers = 2\n")
    assert (
        pretrain_main(["--data", str(shard_dir), "--output", str(tmp_path / "r"), "--config", str(toml)]) == 2
    )
    assert "[model] has unknown key(s) n_layers" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", str(shard_dir), "--output", str(tmp_path / "r"), "--n-embd", "30"]) == 2
    assert "n_head" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", str(shard_dir), "--output", str(tmp_path / "r"), "--device", "gpu9"]) == 2
    one_line_error(capsys, "tokenmill pretrain")


def test_train_then_refuse_overwrite_then_resume_from_the_checkpoint_config(
    tmp_path: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    base = ["--data", str(shard_dir), "--output", str(run)]
    assert pretrain_main([*base, *TINY, "--max-steps", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "step 4" in out and str(run / "ckpt.pt") in out
    assert pretrain_main([*base, *TINY, "--max-steps", "4"]) == 2
    assert "--resume" in one_line_error(capsys, "tokenmill pretrain")
    # Resume needs no model flags: they come from the checkpoint; --max-steps extends the run.
    assert pretrain_main([*base, "--resume", "--max-steps", "6"]) == 0
    assert "step 6" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 6
    assert pretrain_main([*base, "--resume", "--n-embd", "64"]) == 2
    assert "model shape" in one_line_error(capsys, "tokenmill pretrain")


def test_generate_bad_input(tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate_main(["--checkpoint", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "no checkpoint" in one_line_error(capsys, "tokenmill generate")
    assert generate_main(["--checkpoint", str(trained_run), "--prompt", "x", "--temperature", "-1"]) == 2
    assert "temperature" in one_line_error(capsys, "tokenmill generate")


def test_module_entry_point_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.pretrain",
            "--data",
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"tokenmill pretrain: error: shard folder {tmp_path / 'missing'} does not exist"
    ]


def test_a_mixture_from_flags_or_from_the_config_file(
    tmp_path: Path, shard_dir: Path, shard_dir_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    mix = ["--data", f"{shard_dir}:0.7", "--data", f"{shard_dir_b}:0.3"]
    assert pretrain_main([*mix, "--output", str(run), *TINY, "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert f"({shard_dir.name} " in out and f", {shard_dir_b.name} " in out  # val loss per source
    # the config file's data; resume needs neither it nor --data (the checkpoint's), another mixture is named
    toml = tmp_path / "mix.toml"
    toml.write_text(f'[pretrain]\ndata = ["{shard_dir}:7", "{shard_dir_b}:3"]\n')
    assert pretrain_main(["--config", str(toml), "--output", str(run), "--resume", "--max-steps", "3"]) == 0
    assert pretrain_main(["--output", str(run), "--resume", "--max-steps", "4"]) == 0
    capsys.readouterr()
    assert (
        pretrain_main(["--data", str(shard_dir), "--output", str(run), "--resume", "--max-steps", "5"]) == 2
    )
    assert "trained on the mixture" in one_line_error(capsys, "tokenmill pretrain")


def test_mixture_mistakes_are_one_line(
    tmp_path: Path, shard_dir: Path, shard_dir_other_tokenizer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ["--output", str(tmp_path / "run"), *TINY]
    assert pretrain_main(run) == 2
    assert "no shard folder: give --data" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", f"{shard_dir}:-1", *run]) == 2
    assert "positive" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", str(shard_dir), "--data", str(shard_dir_other_tokenizer), *run]) == 2
    assert "different tokenizers" in one_line_error(capsys, "tokenmill pretrain")
    assert pretrain_main(["--data", f"{tmp_path}/nope:0.5", *run]) == 2
    assert f"shard folder {tmp_path}/nope does not exist" in one_line_error(capsys, "tokenmill pretrain")


def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path: Path, shard_dir: Path) -> None:
    """A preempted run (SIGTERM) saves where it is and exits cleanly; --resume takes it to the end."""
    import signal
    import time

    import torch

    run = tmp_path / "run"
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nn_layer = 1\nn_head = 2\nn_embd = 32\nblock_size = 32\n[pretrain]\nbatch_size = 2\n"
        "log_interval = 1\ncheckpoint_interval = 100000\neval_interval = 100000\ncompile = false\n"
    )
    common = ["--data", str(shard_dir), "--output", str(run), "--config", str(config)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.pretrain", *common, "--max-steps", "100000"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by signal" in err
    step = torch.load(run / "ckpt.pt", weights_only=True)["step"]
    assert 5 <= step < 100000  # saved where it stopped, not at a checkpoint interval
    assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
    done = subprocess.run(
        [sys.executable, "-m", "jobs.pretrain", *common, "--max-steps", str(step + 3), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == step + 3


def test_depth_derives_the_shape_and_explicit_flags_win(tmp_path: Path, shard_dir: Path) -> None:
    common = ["--data", str(shard_dir), "--max-steps", "1", "--block-size", "16", "--batch-size", "2"]
    assert pretrain_main([*common, "--output", str(tmp_path / "a"), "--depth", "2"]) == 0
    shape = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)["model_config"]
    assert (shape["n_layer"], shape["n_embd"], shape["n_head"]) == (2, 128, 1)
    assert pretrain_main([*common, "--output", str(tmp_path / "b"), "--depth", "2", "--n-layer", "1"]) == 0
    shape = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)["model_config"]
    assert (shape["n_layer"], shape["n_embd"]) == (1, 128)
