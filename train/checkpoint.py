"""A run's checkpoints: RUN/ckpt.pt (the latest: what --resume, generate and eval read) and the last few
RUN/ckpt-STEP.pt beside it. Written atomically, read back on CPU with weights_only (a checkpoint is data,
not code).

save_checkpoint/load_checkpoint take local paths; publish_checkpoint writes into a run folder, which may
be a remote one staged locally (train/remote.py).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

import torch

from model import GPT, GPTConfig
from pipeline import storage
from pipeline.config import UsageError
from train.remote import RunFolder

CKPT_FILE = "ckpt.pt"
CKPT_FORMAT = "tokenmill-ckpt"
CKPT_VERSION = 3  # 3: optimizer state keyed by parameter name (any world size or sharding loads it)
RESUMABLE_VERSIONS = (3,)  # 2 (Llama-style model, optimizer keyed by position) still generates
NUMBERED = re.compile(r"ckpt-(\d+)\.pt")


def numbered_name(step: int) -> str:
    return f"ckpt-{step:07d}.pt"


def checkpoint_path(run_dir: str) -> str:
    return os.path.join(run_dir, CKPT_FILE)


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Whole or not at all (pipeline.storage.atomic_write): a crash mid-write leaves the previous one."""
    with storage.atomic_write(path) as f:
        torch.save({"format": CKPT_FORMAT, "version": CKPT_VERSION, **state}, f)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load to CPU (RNG states must live there; the optimizer moves its state to the parameters itself)."""
    if os.path.isdir(path):
        path = checkpoint_path(path)
    if not os.path.exists(path):
        raise UsageError(f"no checkpoint at {path}: is it a `tokenmill pretrain --output` folder?")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise UsageError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise UsageError(f"{path} is not a tokenmill checkpoint")
    if ckpt.get("version") == 1:
        raise UsageError(
            f"{path} holds a GPT-2 shaped model from an older tokenmill; the model is now Llama-style "
            "(RMSNorm, RoPE, SwiGLU): start a new run"
        )
    if ckpt.get("version") not in (2, CKPT_VERSION):
        raise UsageError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (want {CKPT_VERSION})"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> GPT:
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model


def publish_checkpoint(run: RunFolder, state: dict[str, Any], keep: int, other_files: Sequence[str]) -> None:
    """Write `state` (a step's checkpoint) into the run folder, then upload other_files and it.

    keep 0: only ckpt.pt. keep N: ckpt-STEP.pt is written, ckpt.pt becomes the same file (a hard link;
    on an object store a server-side copy), and numbered checkpoints beyond the newest N are deleted (and
    any of a later step than this one: a run resumed from an earlier point abandoned them). Every file is
    whole or absent at any moment, so a crash mid-save leaves the previous ckpt.pt.
    """
    if keep == 0:
        save_checkpoint(run.file(CKPT_FILE), state)
        run.push(*other_files, CKPT_FILE)
        return
    step = state["step"]
    name = numbered_name(step)
    save_checkpoint(run.file(name), state)
    _replace_with_link(run.file(name), run.file(CKPT_FILE))
    run.push(*other_files, name)
    run.copy(name, CKPT_FILE)
    numbered = sorted((int(m.group(1)), n) for n in run.names() if (m := NUMBERED.fullmatch(n)) and n != name)
    older = [n for s, n in numbered if s < step]
    stale = [n for s, n in numbered if s > step] + older[: max(0, len(older) - (keep - 1))]
    run.remove(*stale)


def _replace_with_link(src: str, dst: str) -> None:
    """dst becomes src's file, atomically: a hard link renamed over dst (a copy where links are refused)."""
    tmp = f"{dst}.link-{uuid.uuid4().hex[:12]}"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
