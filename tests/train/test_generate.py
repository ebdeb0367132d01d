"""Generation from a run folder, in-process and through `tokenmill generate` / `python -m jobs.generate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.generate import build_parser
from jobs.generate import main as generate_main
from pipeline.config import UsageError
from train.generate import generate_text

REPO = Path(__file__).resolve().parents[2]


def test_greedy_is_deterministic_and_returns_only_new_text(trained_run: Path) -> None:
    a = generate_text(str(trained_run), "ROMEO:", max_new_tokens=30, temperature=0.0, seed=1)
    b = generate_text(str(trained_run), "ROMEO:", max_new_tokens=30, temperature=0.0, seed=2)
    assert a == b and isinstance(a, str) and a
    assert not a.startswith("ROMEO:")


def test_sampling_is_seeded(trained_run: Path) -> None:
    texts = [
        generate_text(str(trained_run), "", max_new_tokens=30, temperature=1.0, top_k=50, seed=s)
        for s in (1, 1, 2)
    ]
    assert texts[0] == texts[1] != texts[2]


def test_stops_at_max_new_tokens_and_accepts_the_ckpt_file(trained_run: Path) -> None:
    assert generate_text(str(trained_run), "The", max_new_tokens=0) == ""
    assert generate_text(
        str(trained_run / "ckpt.pt"), "The", max_new_tokens=5, temperature=0
    ) == generate_text(str(trained_run), "The", max_new_tokens=5, temperature=0)
    with pytest.raises(UsageError, match="no checkpoint"):
        generate_text(str(trained_run.parent / "missing"), "x", max_new_tokens=5)


def test_cli_prints_only_the_generated_text(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().prog == "tokenmill generate"
    argv = [
        "--checkpoint",
        str(trained_run),
        "--prompt",
        "KING:",
        "--max-new-tokens",
        "25",
        "--temperature",
        "0",
    ]
    assert generate_main(argv) == 0
    out = capsys.readouterr()
    assert out.out == generate_text(str(trained_run), "KING:", max_new_tokens=25, temperature=0.0) + "\n"
    assert out.err == ""


def test_module_entry_point_prints_only_text(trained_run: Path) -> None:
    argv = [
        "--checkpoint",
        str(trained_run),
        "--prompt",
        "First",
        "--max-new-tokens",
        "10",
        "--temperature",
        "0",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.generate", *argv], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == generate_text(str(trained_run), "First", max_new_tokens=10, temperature=0.0) + "\n"
    assert "Traceback" not in proc.stderr
