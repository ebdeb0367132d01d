"""The pretraining loop: AdamW, warmup + cosine LR, grad clipping, eval, metrics.jsonl, resumable checkpoints.

RUN/ (the output folder) ends up holding everything `generate` and `--resume` need:
ckpt.pt (model, optimizer, step, configs, RNG states, data identity), tokenizer.json, metrics.jsonl.
The data is one shard folder or a weighted mixture of several (train/loader.py MixtureLoader). Shard folders
and RUN may be URLs (s3://...): see train/remote.py for the local copies they use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from tqdm import tqdm

from model import GPT
from pipeline import storage
from pipeline.config import UsageError
from tokenizer.shards import TOKENIZER_FILE
from train.checkpoint import CKPT_FILE, load_checkpoint, save_checkpoint
from train.config import MODEL_KEYS, PretrainConfig, pretrain_config_from_tables
from train.data_identity import data_change, data_identity, describe_mixture, saved_sources
from train.loader import DataSource, MixtureLoader, parse_data
from train.remote import RunFolder, copy_file, local_shards

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
RUN_FILES = (TOKENIZER_FILE, METRICS_FILE, CKPT_FILE)  # upload order: the checkpoint last
__all__ = [
    "PretrainConfig",
    "checkpoint_data",
    "lr_at",
    "pretrain",
    "pretrain_config_from_tables",
    "resume_config",
]


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to lr, then cosine down to min_lr at lr_decay_steps (default max_steps), then flat."""
    decay_steps = cfg.lr_decay_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if step >= decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / (decay_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (try auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """bfloat16 autocast on GPUs that have it (no loss scaling needed); float32 otherwise."""
    if name == "auto":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16_ok else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: MixtureLoader,
    eval_steps: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
) -> dict[str, float]:
    """`val_loss`: the weighted mean of each source's mean loss over its fixed val windows; with several
    sources also `val_loss/<name>` per source. Empty when no source has a val split to speak of.

    `val_bpb`, bits per byte, comparable across vocabularies: the mean loss times the split's tokens per
    byte of text (manifest text_bytes), over ln 2; an estimate from the windows evaluated, as val_loss is.
    Only for a single source whose manifest counts text bytes.
    """
    model.eval()
    per_source: list[tuple[DataSource, float]] = []
    for source, shard_loader in loader.val_sources():
        losses = []
        for x, y in shard_loader.val_batches(eval_steps):
            with autocast:
                _, loss = model(x.to(device), y.to(device))
            losses.append(loss.item())
        per_source.append((source, sum(losses) / len(losses)))
    model.train()
    if not per_source:
        return {}
    # weights renormalised over the sources that have a val split (one source: its loss, exactly)
    total = sum(s.weight for s, _ in per_source)
    out = {"val_loss": sum(s.weight * loss for s, loss in per_source) / total}
    if len(loader.sources) > 1:
        out.update({f"val_loss/{s.name}": loss for s, loss in per_source})
    else:
        val = loader.loaders[0].manifest.totals()["val"]
        if val["text_bytes"]:
            out["val_bpb"] = out["val_loss"] * val["num_tokens"] / val["text_bytes"] / math.log(2)
    return out


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resumable(ckpt: dict[str, Any], cfg: PretrainConfig, data: dict[str, Any]) -> None:
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
    for key, value in saved.items():
        if key in cfg.to_dict() and cfg.to_dict()[key] != value:
            log.info("resume: %s changed from %r to %r", key, value, cfg.to_dict()[key])


class _StopOnSignal:
    """SIGTERM (a scheduler's preemption, `kill`) asks the loop to save a checkpoint and leave after the step
    it is in, instead of dying mid-step and losing everything since the last checkpoint."""

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


def _keep_metrics_until(path: str, step: int) -> None:
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
    return PretrainConfig(**load_checkpoint(run.file(CKPT_FILE))["pretrain_config"])


def checkpoint_data(out_dir: str, cache_dir: str | None = None) -> dict[str, Any] | None:
    """The data identity a run folder's checkpoint recorded (dir, manifest_sha256, ...); None if none."""
    run = RunFolder(out_dir, cache_dir)
    if not run.exists(CKPT_FILE) or run.pull(CKPT_FILE):
        return None
    return load_checkpoint(run.file(CKPT_FILE))["data"]


def _open_run(out_dir: str, resume: bool, cache_dir: str | None) -> tuple[RunFolder, dict[str, Any] | None]:
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
    return run, load_checkpoint(run.file(CKPT_FILE))


def pretrain(
    data: str | Sequence[str] | None,
    out_dir: str,
    cfg: PretrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Train a GPT on shard folders, writing out_dir/{ckpt.pt, tokenizer.json, metrics.jsonl}.

    `data` is one shard folder, or `DIR[:WEIGHT]` specs of a weighted mixture (None: cfg.data); see
    train/loader.py for how a spec parses. resume=True continues out_dir/ckpt.pt exactly (same batches, LR
    and RNG as if never stopped) up to cfg.max_steps, on the same data only; without it an existing
    checkpoint is never overwritten. Any folder may be a URL: remote shards are read from a checked local
    copy and a remote run is staged locally and uploaded at every checkpoint, both under cache_dir (see
    train/remote.py). Returns a summary dict. Raises UsageError for anything the user can fix.
    """
    cfg = cfg or PretrainConfig()
    if data is not None:  # the checkpoint's config records the data it was trained on
        cfg = replace(cfg, data=(data,) if isinstance(data, str) else tuple(data))
    cfg = cfg.validate()
    sources = parse_data(cfg.data)
    run, ckpt = _open_run(out_dir, resume, cache_dir)  # before a download of the shards, not after
    local_dirs = [local_shards(s.url, cache_dir) for s in sources]
    loader = MixtureLoader(sources, local_dirs, cfg.block_size, cfg.batch_size, cfg.seed)
    tok = loader.manifest.tokenizer
    data_id = data_identity(local_dirs, loader)
    ckpt_file = run.url_of(CKPT_FILE)
    if ckpt is not None:
        _check_resumable(ckpt, cfg, data_id)
    if len(sources) > 1:
        log.info("data mixture: %s", loader.describe())
    for source, shard_loader in zip(sources, loader.loaders, strict=True):
        if not shard_loader.has_val:
            what = "val split" if len(sources) == 1 else f"{source.name}'s val split"
            then = "skipping evaluation" if not loader.has_val else "no val loss for it"
            n, window = shard_loader.val.num_tokens, cfg.block_size + 1
            log.warning("note: %s has %d tokens, fewer than one window of %d: %s", what, n, window, then)

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(tok.vocab_size)).to(device)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr, device_type=device.type)
    step, elapsed_before, last = 0, 0.0, {"loss": None, "val_loss": None}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        step, elapsed_before, last = ckpt["step"], ckpt["elapsed_s"], ckpt["last"]
        log.info("resuming %s at step %d of %d", ckpt_file, step, cfg.max_steps)

    copy_file(os.path.join(local_dirs[0], tok.file), run.file(TOKENIZER_FILE))
    metrics_file = run.file(METRICS_FILE)
    if resume:
        _keep_metrics_until(metrics_file, step)
    use_compile = cfg.compile is True or (cfg.compile == "auto" and device.type == "cuda")
    train_model = torch.compile(model) if use_compile else model  # `model` stays the uncompiled owner

    def state() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "model_config": asdict(model.config),
            "pretrain_config": cfg.to_dict(),
            "rng": _rng_state(),
            "elapsed_s": elapsed_before + time.perf_counter() - t_start,
            "last": last,
            "data": data_id,
        }

    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum
    flops_per_token = model.flops_per_token(cfg.block_size)
    stop = _StopOnSignal()
    t_start = t_log = time.perf_counter()
    train_time, steps_since_log, start_step = 0.0, 0, step
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        desc="pretrain",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s
    )
    try:
        model.train()
        with open(metrics_file, "a" if resume else "w") as metrics:
            while step < cfg.max_steps:
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=device)
                for micro in range(cfg.grad_accum):
                    x, y = loader.train_batch(step, micro)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    with autocast:
                        _, loss = train_model(x, y)
                    (loss / cfg.grad_accum).backward()
                    loss_sum += loss.detach()
                # the norm is logged either way; with grad_clip 0 nothing is clipped (max_norm = inf)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps_since_log += 1
                bar.update(1)

                is_last = step == cfg.max_steps
                do_eval = step % cfg.eval_interval == 0 or is_last
                if step % cfg.log_interval == 0 or do_eval:
                    last["loss"] = loss_sum.item() / cfg.grad_accum  # .item() syncs the GPU: timing is honest
                    now = time.perf_counter()
                    train_time += now - t_log
                    tokens_per_s = steps_since_log * tokens_per_step / (now - t_log)
                    row = {
                        "step": step,
                        "loss": round(last["loss"], 6),
                        "lr": lr,
                        "grad_norm": round(grad_norm.item(), 6),
                        "tokens_per_s": round(tokens_per_s, 1),
                        "tflops": round(tokens_per_s * flops_per_token / 1e12, 4),  # achieved, model FLOPs
                    }
                    if do_eval and loader.has_val:
                        val = evaluate(train_model, loader, cfg.eval_steps, device, autocast)
                        last["val_loss"] = val["val_loss"]
                        last["val_losses"] = {k.split("/", 1)[1]: v for k, v in val.items() if "/" in k}
                        row.update({k: round(v, 6) for k, v in val.items()})
                    row["elapsed_s"] = round(elapsed_before + time.perf_counter() - t_start, 2)
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    bar.set_postfix(
                        {k: row[k] for k in ("loss", "val_loss", "tokens_per_s") if k in row}, refresh=False
                    )
                    t_log, steps_since_log = time.perf_counter(), 0  # eval time is not training time
                if stop.signal is not None:
                    is_last = True  # save now and leave: a scheduler's SIGTERM gives a few seconds
                if step % cfg.checkpoint_interval == 0 or is_last:
                    t_save = time.perf_counter()
                    save_checkpoint(run.file(CKPT_FILE), state())
                    run.push(*RUN_FILES)
                    t_log += time.perf_counter() - t_save  # nor is writing (and uploading) the checkpoint
                if stop.signal is not None:
                    log.warning(
                        "stopped by signal %d at step %d: %s saved; --resume continues",
                        stop.signal,
                        step,
                        ckpt_file,
                    )
                    break
    finally:
        stop.restore()
    bar.close()

    if step == start_step:
        log.info("%s is already at step %d (max_steps %d): nothing to train", ckpt_file, step, cfg.max_steps)
    trained = step - start_step
    summary = {
        "run_dir": run.url,
        "checkpoint": ckpt_file,
        "step": step,
        "steps_trained": trained,
        "loss": last["loss"],
        "val_loss": last["val_loss"],
        "val_losses": last.get("val_losses", {}),  # per source, when there are several
        "tokens_per_s": round(trained * tokens_per_step / train_time, 1) if train_time else None,
        "elapsed_s": round(elapsed_before + time.perf_counter() - t_start, 2),
        "num_params": model.num_params(),
        "train_tokens": loader.train_tokens,
        "val_tokens": loader.val_tokens,
        "data": [
            {"name": s["name"], "dir": s["dir"], "weight": s["weight"], "train_tokens": s["train_tokens"]}
            for s in data_id["sources"]
        ],
        "stopped_by_signal": stop.signal,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
    }
    return summary
