"""RUN/ckpt.pt: written atomically, read back on CPU with weights_only (a checkpoint is data, not code).

Both take local paths: a remote run folder is staged locally (train/remote.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from model import GPT, GPTConfig
from pipeline import storage
from pipeline.config import UsageError

CKPT_FILE = "ckpt.pt"
CKPT_FORMAT = "tokenmill-ckpt"
CKPT_VERSION = 2  # 2: the Llama-style model (1 was GPT-2 shaped: its weights do not load)


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
    if ckpt.get("version") != CKPT_VERSION:
        raise UsageError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (want {CKPT_VERSION})"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> GPT:
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model
