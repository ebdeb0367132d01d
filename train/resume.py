"""Stopping a run and continuing it: the run folder's checkpoint checked against --resume, the config and
data it was trained with, RNG state, metrics trimmed back to the checkpoint, and SIGTERM as a clean stop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

import torch

from pipeline import storage
from pipeline.config import UsageError
from train.checkpoint import CKPT_FILE, RESUMABLE_VERSIONS, load_checkpoint
from train.config import MODEL_KEYS, PretrainConfig
from train.data_identity import data_change, describe_mixture, saved_sources
from train.remote import RunFolder

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def open_run(out_dir: str, resume: bool, cache_dir: str | None) -> tuple[RunFolder, dict[str, Any] | None]:
    """The run folder, checked against --resume, and its checkpoint when resuming (downloaded if remote)."""
    run = RunFolder(out_dir, cache_dir)
    ckpt_url = run.url_of(CKPT_FILE)
    exists = run.exists(CKPT_FILE)
    if not resume and exists:
        raise UsageError(
            f"{ckpt_url} already exists: pass --resume to continue that run, or choose another --output"
        )
    if resume and not exists:
        raise UsageError(f"nothing to resume: {ckpt_url} does not exist (drop --resume to start a new run)")
    if not resume:
        return run, None
    run.pull(CKPT_FILE, METRICS_FILE)
    ckpt = load_checkpoint(run.file(CKPT_FILE))
    if ckpt["version"] not in RESUMABLE_VERSIONS:
        raise UsageError(
            f"{ckpt_url} was written by an older tokenmill (checkpoint version {ckpt['version']}) whose "
            "optimizer state cannot be resumed; generate and eval still read it. Start a new run"
        )
    return run, ckpt


def check_resumable(ckpt: dict[str, Any], cfg: PretrainConfig, data: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint on other data or another model shape; log other changed settings."""
    saved_data = ckpt["data"]
    if saved_data["tokenizer_sha256"] != data["tokenizer_sha256"]:
        raise UsageError(
            f"the shard folder's tokenizer is not the one the checkpoint was trained with "
            f"(checkpoint data: {describe_mixture(saved_sources(saved_data))})"
        )
    if why := data_change(saved_data, data["sources"]):
        raise UsageError(f"{why}: resuming would continue on other data; start a new run instead")
    saved = ckpt["pretrain_config"]
    changed = [k for k in MODEL_KEYS if saved[k] != getattr(cfg, k)]
    if changed:
        diffs = ", ".join(f"{k}={saved[k]} in the checkpoint, {getattr(cfg, k)} now" for k in changed)
        raise UsageError(f"cannot resume with a different model shape: {diffs}")
    now = cfg.to_dict()
    for key, value in saved.items():
        if key in now and now[key] != value:
            log.info("resume: %s changed from %r to %r", key, value, now[key])


def keep_metrics_until(path: str, step: int) -> None:
    """On resume, drop rows logged after the checkpoint (they will be logged again) and any line a crash
    cut short; keep the rest."""
    if not os.path.exists(path):
        return
    rows = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= step:
                    rows.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    with storage.atomic_write(path, "w") as f:
        f.writelines(rows)


def resume_config(out_dir: str, cache_dir: str | None = None) -> PretrainConfig:
    """The config a run folder's checkpoint was trained with: the starting point for resuming it."""
    run = RunFolder(out_dir, cache_dir)
    if run.pull(CKPT_FILE):
        raise UsageError(f"no checkpoint at {run.url_of(CKPT_FILE)}: nothing to resume")
    saved = load_checkpoint(run.file(CKPT_FILE))["pretrain_config"]
    known = PretrainConfig.__dataclass_fields__
    return PretrainConfig(**{k: v for k, v in saved.items() if k in known})


def checkpoint_data(out_dir: str, cache_dir: str | None = None) -> dict[str, Any] | None:
    """The data identity a run folder's checkpoint recorded (dir, manifest_sha256, ...); None if none."""
    run = RunFolder(out_dir, cache_dir)
    if not run.exists(CKPT_FILE) or run.pull(CKPT_FILE):
        return None
    return load_checkpoint(run.file(CKPT_FILE))["data"]


class StopOnSignal:
    """SIGTERM (a scheduler's preemption, `kill`, torchrun passing one on) asks the loop to save a
    checkpoint and leave after the step it is in, instead of dying mid-step and losing everything since
    the last checkpoint."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signal = signum

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
