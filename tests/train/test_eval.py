"""`tokenmill eval`: a checkpoint's loss over every window of a split, checked against a forward pass done
by hand, and bits per byte against the text's own byte count."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from jobs.cli import main as tokenmill_main
from jobs.eval import main as eval_main
from tokenizer.shards import read_manifest, read_shard, write_manifest
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.evaluate import score_split
from train.loader import TokenStream

BLOCK = 32  # tests/train/conftest.py TRAINED_RUN's block_size
KEYS = {"checkpoint", "step", "data", "split", "windows", "total_windows", "tokens", "loss", "perplexity"}


def run_eval(capsys: pytest.CaptureFixture[str], run: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    code = eval_main(["--checkpoint", str(run), "--data", str(data), "--device", "cpu", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def evaluated(capsys: pytest.CaptureFixture[str], run: Path, data: Path, *extra: str) -> tuple[dict, str]:
    code, out, err = run_eval(capsys, run, data, *extra)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    return json.loads(out), err


def split_tokens(folder: Path, split: str) -> np.ndarray:
    manifest = read_manifest(str(folder))
    return np.concatenate([read_shard(str(folder / s.file)).tokens for s in manifest.splits[split]])


def loss_by_hand(run: Path, tokens: np.ndarray, windows: int) -> float:
    """Each window alone through the model, summed cross-entropy of its own logits."""
    model = model_from_checkpoint(load_checkpoint(str(run))).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(windows):
            w = torch.from_numpy(tokens[k * (BLOCK + 1) : (k + 1) * (BLOCK + 1)].astype(np.int64))[None]
            logits, _ = model(w[:, :-1], w[:, 1:])
            total += F.cross_entropy(logits[0].double(), w[0, 1:], reduction="sum").item()
            count += BLOCK
    return total / count


@pytest.fixture(scope="module")
def shards_with_bytes(
    tmp_path_factory: pytest.TempPathFactory, shard_dir: Path, tokenizer: Tokenizer
) -> Path:
    """shard_dir with each shard's text bytes in its manifest, as `tokenmill tokenize` writes them (counted
    here from the decoded documents: decode(encode(text)) is text)."""
    folder = tmp_path_factory.mktemp("with-bytes") / "shards"
    shutil.copytree(shard_dir, folder)
    manifest = read_manifest(str(folder))
    for shards in manifest.splits.values():
        for info in shards:
            shard = read_shard(str(folder / info.file))
            docs = np.split(shard.tokens, shard.offsets[1:-1])
            info.text_bytes = sum(len(tokenizer.decode(d.tolist()).encode()) for d in docs)
    write_manifest(str(folder), manifest)
    return folder


def test_scores_every_val_window_like_a_forward_by_hand(
    trained_run: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, err = evaluated(capsys, trained_run, shard_dir)
    assert KEYS | {"val_loss", "bits_per_byte"} == set(result)
    tokens = split_tokens(shard_dir, "val")
    windows = len(tokens) // (BLOCK + 1)
    assert windows > 8  # more than one batch of the default 8
    assert result["split"] == "val" and result["windows"] == result["total_windows"] == windows
    assert result["tokens"] == windows * BLOCK
    assert result["step"] == 200
    assert math.isclose(result["loss"], loss_by_hand(trained_run, tokens, windows), rel_tol=1e-5)
    assert result["val_loss"] == result["loss"]
    assert math.isclose(result["perplexity"], math.exp(result["loss"]), rel_tol=1e-12)
    assert 1 < result["loss"] < math.log(512)  # trained: better than uniform over the vocabulary
    # this folder's manifest has no text bytes (as before tokenize counted them): null, and said why
    assert result["bits_per_byte"] is None
    assert "bits_per_byte is null" in err and len(err.strip().splitlines()) == 1


def test_bits_per_byte_from_the_manifest(
    trained_run: Path,
    shards_with_bytes: Path,
    documents: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    result, err = evaluated(capsys, trained_run, shards_with_bytes)
    assert err == ""
    val = read_manifest(str(shards_with_bytes)).totals()["val"]
    by_manifest = result["loss"] * val["num_tokens"] / val["text_bytes"] / math.log(2)
    # by hand: the val split is the last 6 documents (conftest); its tokens include one EOS per document
    text_bytes = sum(len(d.encode()) for d in documents[-6:])
    by_text = result["loss"] * len(split_tokens(shards_with_bytes, "val")) / text_bytes / math.log(2)
    assert math.isclose(result["bits_per_byte"], by_manifest, rel_tol=1e-12)
    assert math.isclose(result["bits_per_byte"], by_text, rel_tol=1e-12)
    assert 0.5 < result["bits_per_byte"] < 8


def test_max_batches_scores_the_first_windows(
    trained_run: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, _ = evaluated(capsys, trained_run, shard_dir, "--max-batches", "1", "--batch-size", "3")
    assert result["windows"] == 3 < result["total_windows"]
    assert result["tokens"] == 3 * BLOCK
    hand = loss_by_hand(trained_run, split_tokens(shard_dir, "val"), 3)
    assert math.isclose(result["loss"], hand, rel_tol=1e-5)


def test_train_split(trained_run: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = evaluated(capsys, trained_run, shard_dir, "--split", "train", "--batch-size", "64")
    assert set(result) == KEYS | {"bits_per_byte"}  # no val_loss: this is not the val split
    assert result["split"] == "train"
    tokens = split_tokens(shard_dir, "train")  # two shards: some windows cross from one into the next
    assert result["windows"] == result["total_windows"] == len(tokens) // (BLOCK + 1)
    val, _ = evaluated(capsys, trained_run, shard_dir)
    assert result["loss"] < val["loss"]  # 200 steps of a 1-layer model on this split: it has seen it


def test_through_the_tokenmill_command(
    trained_run: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]
):
    argv = [
        "eval",
        "--checkpoint",
        str(trained_run / "ckpt.pt"),
        "--data",
        str(shard_dir),
        "--max-batches",
        "2",
    ]
    assert tokenmill_main([*argv, "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["windows"] == 16 and result["checkpoint"].endswith("ckpt.pt")


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenmill eval: error: "), err
    return lines[0]


def test_another_tokenizer_is_refused(
    trained_run: Path, shard_dir_other_tokenizer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(*run_eval(capsys, trained_run, shard_dir_other_tokenizer))
    theirs = read_manifest(str(shard_dir_other_tokenizer)).tokenizer.sha256
    ours = load_checkpoint(str(trained_run))["data"]["tokenizer_sha256"]
    assert "another tokenizer" in line and theirs[:12] in line and ours[:12] in line


@pytest.mark.parametrize(
    "extra, message",
    [
        ((), "fewer than one window"),  # a val split of one tiny document
        (("--max-batches", "0"), "max_batches must be >= 1"),
        (("--batch-size", "0"), "batch_size must be >= 1"),
    ],
)
def test_mistakes_are_one_line(
    trained_run: Path,
    shard_dir_no_val: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    assert message in one_error_line(*run_eval(capsys, trained_run, shard_dir_no_val, *extra))


def test_missing_checkpoint_is_one_line(tmp_path: Path, shard_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert "no checkpoint" in one_error_line(*run_eval(capsys, tmp_path / "nope", shard_dir))


def test_score_split_keeps_the_models_mode(trained_run: Path, shard_dir: Path) -> None:
    # what a training loop calling it needs: its model still in training mode afterwards
    model = model_from_checkpoint(load_checkpoint(str(trained_run))).train()
    manifest = read_manifest(str(shard_dir))
    stream = TokenStream([(str(shard_dir), s) for s in manifest.splits["val"]])
    scores: dict[str, Any] = score_split(model, stream, BLOCK, batch_size=5, max_batches=2)
    assert model.training
    assert scores["windows"] == 10 and scores["tokens"] == 10 * BLOCK
