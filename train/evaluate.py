"""Loss, perplexity and bits per byte of a checkpoint over a whole split of a shard folder.

A split is scored as non-overlapping windows of block_size+1 tokens laid side by side from its start (the
last partial window is left out): each window predicts its last block_size tokens from the ones before, so
every scored token has a context of its own window only, as in training. `score_split` is the reusable
part (a model and a token stream in, sums out); `evaluate_checkpoint` wires a run and a shard folder to it.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np
import torch

from pipeline import storage
from pipeline.config import UsageError
from tokenizer.shards import Manifest, verify_shards
from train.checkpoint import CKPT_FILE, load_checkpoint, model_from_checkpoint
from train.generate import local_run
from train.loader import TokenStream, open_manifest
from train.pretrain import resolve_device
from train.remote import local_shards

SPLITS = ("val", "train")


def window_starts(num_tokens: int, block_size: int) -> np.ndarray:
    """Starts of the windows of block_size+1 tokens that fit side by side in num_tokens."""
    return np.arange(num_tokens // (block_size + 1), dtype=np.int64) * (block_size + 1)


@torch.no_grad()
def score_split(
    model: torch.nn.Module,
    stream: TokenStream,
    block_size: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, Any]:
    """Mean loss (nats per token) of `model` over the windows of `stream` (see window_starts), batch_size
    windows per forward, the first max_batches batches only when given.

    Returns loss, tokens (scored), windows (scored) and total_windows (in the stream). The model is put in
    eval mode and back in the mode it was in.
    """
    starts = window_starts(stream.num_tokens, block_size)
    if max_batches is not None:
        scored = starts[: max_batches * batch_size]
    else:
        scored = starts
    if not len(scored):
        raise ValueError(f"a stream of {stream.num_tokens} tokens holds no window of {block_size + 1}")
    was_training = model.training
    model.eval()
    total_nats, tokens = 0.0, 0
    buf = torch.empty((batch_size, block_size + 1), dtype=torch.int64)
    for i in range(0, len(scored), batch_size):
        batch = scored[i : i + batch_size]
        rows = buf[: len(batch)]
        stream.read_windows(batch, rows.numpy())
        x, y = rows[:, :-1].to(device), rows[:, 1:].to(device)
        with autocast or contextlib.nullcontext():
            _, loss = model(x, y)
        # every window scores block_size tokens: mean x count is the sum (in float64 across batches)
        total_nats += loss.item() * y.numel()
        tokens += y.numel()
    model.train(was_training)
    return {
        "loss": total_nats / tokens,
        "tokens": tokens,
        "windows": len(scored),
        "total_windows": len(starts),
    }


def bits_per_byte(loss: float, manifest: Manifest, split: str) -> float | None:
    """loss (nats per token) as bits per UTF-8 byte of text, through the split's tokens per byte (as
    train/pretrain.py's val_bpb); None when the manifest does not count text bytes (older folders)."""
    totals = manifest.totals().get(split, {})
    if not totals.get("text_bytes"):
        return None
    return loss * totals["num_tokens"] / totals["text_bytes"] / math.log(2)


def _load_checkpoint(checkpoint: str, cache_dir: str | None) -> dict[str, Any]:
    """A run folder or one of its checkpoint files, local or at a URL (only ckpt.pt is fetched)."""
    if storage.is_local(checkpoint):
        return load_checkpoint(checkpoint)
    return load_checkpoint(os.path.join(local_run(checkpoint, cache_dir, files=(CKPT_FILE,)), CKPT_FILE))


def evaluate_checkpoint(
    checkpoint: str,
    data: str,
    split: str = "val",
    max_batches: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split of a shard folder (either may be a URL); one flat dict:
    checkpoint, step, data, split, windows, total_windows, tokens, loss (nats per token), val_loss (the
    same, for the val split only), perplexity and bits_per_byte (None without text bytes in the manifest).

    float32 on the CPU, bfloat16 autocast on a GPU that has it.
    """
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if max_batches is not None and max_batches < 1:
        raise UsageError(f"max_batches must be >= 1, got {max_batches}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    ckpt = _load_checkpoint(checkpoint, cache_dir)
    local = local_shards(data, cache_dir)
    manifest = open_manifest(local)
    trained_on = ckpt["data"].get("tokenizer_sha256")
    if trained_on != manifest.tokenizer.sha256:  # other token ids: the loss would be meaningless
        raise UsageError(
            f"{data} was tokenized with another tokenizer (sha256 {manifest.tokenizer.sha256[:12]}...) than "
            f"the checkpoint {checkpoint} was trained with ({str(trained_on)[:12]}...)"
        )
    problems = verify_shards(local, deep=False)  # cheap: sizes, counts; each shard's sha256 as it opens
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{data}: {problems[0]}{more}; `tokenmill verify` lists them")
    stream = TokenStream([(local, s) for s in manifest.splits.get(split, [])])
    block_size = int(ckpt["model_config"]["block_size"])
    if stream.num_tokens < block_size + 1:
        raise UsageError(
            f"the {split} split of {data} has {stream.num_tokens} tokens, fewer than one window of "
            f"block_size+1 = {block_size + 1}"
        )
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else None
    scores = score_split(model, stream, block_size, batch_size, dev, max_batches, autocast)
    loss = scores.pop("loss")
    out: dict[str, Any] = {"checkpoint": checkpoint, "step": ckpt.get("step"), "data": data, "split": split}
    out.update(scores)
    out["loss"] = loss
    if split == "val":
        out["val_loss"] = loss
    out["perplexity"] = math.exp(loss)
    out["bits_per_byte"] = bits_per_byte(loss, manifest, split)
    return out
