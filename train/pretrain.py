"""The pretraining loop: AdamW, warmup + cosine LR, grad clipping, eval, metrics.jsonl, resumable checkpoints,
on one process or data-parallel over many (train/distributed.py: torchrun or Ray Train, DDP or FSDP2).

RUN/ (the output folder) ends up holding everything `generate`, `eval` and `--resume` need:
ckpt.pt (model, optimizer, step, configs, RNG states, data identity; the last few also as ckpt-STEP.pt),
tokenizer.json, metrics.jsonl. The data is one shard folder or a weighted mixture of several
(train/loader.py MixtureLoader). Shard folders and RUN may be URLs (s3://...): see train/remote.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from model import GPT
from pipeline.config import UsageError
from tokenizer.shards import TOKENIZER_FILE
from train import distributed
from train.checkpoint import CKPT_FILE, publish_checkpoint
from train.config import PretrainConfig, pretrain_config_from_tables
from train.data_identity import data_identity
from train.loader import DataSource, MixtureLoader, parse_data
from train.remote import copy_file, local_shards
from train.resume import (
    METRICS_FILE,
    StopOnSignal,
    check_resumable,
    checkpoint_data,
    keep_metrics_until,
    open_run,
    resume_config,
    rng_state,
    set_rng_state,
)

log = logging.getLogger(__name__)

__all__ = [
    "PretrainConfig",
    "checkpoint_data",
    "lr_at",
    "pretrain",
    "pretrain_config_from_tables",
    "resume_config",
]
T = TypeVar("T")

# bf16 dense peak TFLOPs of common training GPUs, by a substring of torch.cuda.get_device_name()
GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to lr, then cosine down to min_lr at lr_decay_steps (default max_steps), then flat."""
    decay_steps = cfg.lr_decay_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if step >= decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / (decay_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: this process's GPU (cuda:LOCAL_RANK) if there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (try auto, cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """bfloat16 autocast on GPUs that have it (no loss scaling needed); float32 otherwise."""
    if name == "auto":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16_ok else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def peak_flops(cfg: PretrainConfig, device: torch.device, dtype: torch.dtype) -> float | None:
    """One device's peak FLOP/s, for MFU: the config's, else a known GPU's bf16 peak, else unknown."""
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    if device.type == "cuda" and dtype == torch.bfloat16:
        name = torch.cuda.get_device_name(device)
        return next((t * 1e12 for key, t in GPU_PEAK_TFLOPS.items() if key in name), None)
    return None


def _everywhere(world: distributed.World, fn: Callable[[], T]) -> T:
    """fn() on every process, rank 0 first, then the first process of each machine, then the rest (so a
    machine's cache of remote files is filled once). A UsageError anywhere stops every process."""
    turn = 0 if world.is_main else 1 if world.local_rank == 0 else 2
    result, error = None, None
    for t in range(3 if world.distributed else 1):
        if t == turn:
            try:
                result = fn()
            except UsageError as e:
                error = e
        if distributed.any_process(world, error is not None):
            raise error or UsageError("another training process failed: its error is above")
    return result  # type: ignore[return-value]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: MixtureLoader,
    cfg: PretrainConfig,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    world: distributed.World,
) -> dict[str, float]:
    """`val_loss`: the weighted mean of each source's mean loss over its fixed val windows; with several
    sources also `val_loss/<name>` per source. Empty when no source has a val split to speak of.

    The processes share the batches (batch i on rank i mod W). Every process runs as many forwards (a
    sharded model's forward is a collective); the padding forwards are not counted.

    `val_bpb`, bits per byte, comparable across vocabularies: the mean loss times the split's tokens per
    byte of text (manifest text_bytes), over ln 2; an estimate from the windows evaluated, as val_loss is.
    Only for a single source whose manifest counts text bytes.
    """
    model.eval()
    per_source = []
    for source, shard_loader in loader.val_sources():
        batches = list(shard_loader.val_batches(cfg.eval_steps))
        rounds = math.ceil(len(batches) / world.world_size)
        total = 0.0
        for i in range(world.rank, rounds * world.world_size, world.world_size):
            x, y = batches[i] if i < len(batches) else batches[0]
            with autocast:
                _, loss = model(x.to(device), y.to(device))
            total += loss.item() if i < len(batches) else 0.0
        per_source.append((source, distributed.all_sum(world, total)[0] / len(batches)))
    model.train()
    if not per_source:
        return {}
    # weights renormalised over the sources that have a val split (one source: its loss, exactly)
    weight = sum(s.weight for s, _ in per_source)
    out = {"val_loss": sum(s.weight * loss for s, loss in per_source) / weight}
    if len(loader.sources) > 1:
        out.update({f"val_loss/{s.name}": loss for s, loss in per_source})
    else:
        val = loader.loaders[0].manifest.totals()["val"]
        if val["text_bytes"]:
            out["val_bpb"] = out["val_loss"] * val["num_tokens"] / val["text_bytes"] / math.log(2)
    return out


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
    train/remote.py). Under torchrun or Ray Train every process calls this; rank 0 writes the run folder.
    Returns a summary dict. Raises UsageError for anything the user can fix.
    """
    cfg = cfg or PretrainConfig()
    if data is not None:  # the checkpoint's config records the data it was trained on
        cfg = replace(cfg, data=(data,) if isinstance(data, str) else tuple(data))
    cfg = cfg.validate()
    sources = parse_data(cfg.data)
    world = distributed.join_world("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        world.check_divides(cfg.grad_accum)
        device = resolve_device(cfg.device, world.local_rank)
    except UsageError:
        distributed.leave_world(world)
        raise
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        return _train(sources, out_dir, cfg, resume, progress, cache_dir, world, device)
    finally:
        distributed.leave_world(world)


def _train(
    sources: list[DataSource],
    out_dir: str,
    cfg: PretrainConfig,
    resume: bool,
    progress: bool,
    cache_dir: str | None,
    world: distributed.World,
    device: torch.device,
) -> dict[str, Any]:
    # before any shard is copied: a wrong --resume fails at once
    run, ckpt = _everywhere(
        world, lambda: open_run(out_dir, resume, cache_dir) if world.is_main else (None, None)
    )
    local_dirs = _everywhere(world, lambda: [local_shards(s.url, cache_dir) for s in sources])
    loader = MixtureLoader(sources, local_dirs, cfg.block_size, cfg.batch_size, cfg.seed)
    tok = loader.manifest.tokenizer
    data_id = data_identity(local_dirs, loader)
    _everywhere(world, lambda: check_resumable(ckpt, cfg, data_id) if ckpt is not None else None)
    if world.is_main:
        _warn_short_val(loader, cfg)

    dtype = resolve_dtype(cfg.dtype, device)
    fsdp = world.distributed and cfg.strategy == "fsdp"
    # FSDP2 casts its parameters itself (MixedPrecisionPolicy); everyone else autocasts
    use_autocast = dtype != torch.float32 and not fsdp
    autocast = torch.autocast(device.type, dtype=dtype) if use_autocast else contextlib.nullcontext()
    torch.manual_seed(cfg.seed)  # every process builds the same initial weights
    model = GPT(cfg.model_config(tok.vocab_size)).to(device)
    wrapped = distributed.wrap_model(model, world, cfg.strategy, device, dtype)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr, device_type=device.type)
    step, elapsed_before, last = 0, 0.0, {"loss": None, "val_loss": None}
    if resume:
        saved = (ckpt["model"], ckpt["optimizer"]) if world.is_main else None
        distributed.load_full_state(model, optimizer, world, saved)
        meta = distributed.broadcast(
            world, {k: ckpt[k] for k in ("step", "elapsed_s", "last", "rng")} if ckpt else None
        )
        set_rng_state(meta["rng"])
        step, elapsed_before, last = meta["step"], meta["elapsed_s"], meta["last"]
        if world.is_main:
            log.info("resuming %s at step %d of %d", run.url_of(CKPT_FILE), step, cfg.max_steps)
        del ckpt  # its tensors are in the model and optimizer now

    metrics_file = None
    if world.is_main:
        copy_file(os.path.join(local_dirs[0], tok.file), run.file(TOKENIZER_FILE))
        metrics_file = run.file(METRICS_FILE)
        if resume:
            keep_metrics_until(metrics_file, step)
    use_compile = cfg.compile is True or (cfg.compile == "auto" and device.type == "cuda")
    train_model = torch.compile(wrapped) if use_compile else wrapped  # `model` stays the owner
    eval_model = model if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) else train_model

    def save() -> None:
        model_state, optim_state = distributed.full_state(model, optimizer)  # a collective under FSDP
        if world.is_main:
            state = {
                "model": model_state,
                "optimizer": optim_state,
                "step": step,
                "model_config": asdict(model.config),
                "pretrain_config": cfg.to_dict(),
                "rng": rng_state(),
                "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                "last": last,
                "data": data_id,
                "world_size": world.world_size,
            }
            publish_checkpoint(run, state, cfg.keep_checkpoints, (TOKENIZER_FILE, METRICS_FILE))

    micros = world.micro_steps(cfg.grad_accum)
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum  # the global batch
    flops_per_token = model.flops_per_token(cfg.block_size)
    peak = peak_flops(cfg, device, dtype)
    stop = StopOnSignal()
    t_start = t_log = time.perf_counter()
    train_time, steps_since_log, start_step, stopped = 0.0, 0, step, False
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        desc="pretrain",
        unit="step",
        file=sys.stderr,
        disable=not (progress and world.is_main),
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s
    )
    try:
        model.train()
        with (
            open(metrics_file, "a" if resume else "w")
            if metrics_file
            else contextlib.nullcontext() as metrics
        ):
            while step < cfg.max_steps:
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=device)
                for i, micro in enumerate(micros):
                    x, y = loader.train_batch(step, micro)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    with distributed.gradient_sync(wrapped, i == len(micros) - 1):
                        with autocast:
                            _, loss = train_model(x, y)
                        # processes average their gradients: each divides by its own share of the step
                        (loss / len(micros)).backward()
                    loss_sum += loss.detach()
                # the norm is logged either way; with grad_clip 0 nothing is clipped (max_norm = inf)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps_since_log += 1
                bar.update(1)

                # a signal caught by any process stops them all at the same step
                stopped = distributed.any_process(world, stop.signal is not None)
                is_last = step == cfg.max_steps or stopped
                do_eval = step % cfg.eval_interval == 0 or step == cfg.max_steps
                if step % cfg.log_interval == 0 or do_eval:
                    last["loss"] = distributed.all_sum(world, loss_sum.item())[0] / cfg.grad_accum
                    now = time.perf_counter()
                    train_time += now - t_log
                    tokens_per_s = steps_since_log * tokens_per_step / (now - t_log)
                    achieved = tokens_per_s * flops_per_token
                    row = {
                        "step": step,
                        "loss": round(last["loss"], 6),
                        "lr": lr,
                        "grad_norm": round(float(grad_norm), 6),
                        "tokens_per_s": round(tokens_per_s, 1),
                        "tflops": round(achieved / 1e12, 4),  # achieved, model FLOPs, all processes
                    }
                    if peak:
                        row["mfu"] = round(achieved / (peak * world.world_size), 4)
                    if do_eval and loader.has_val:
                        val = evaluate(eval_model, loader, cfg, device, autocast, world)
                        last["val_loss"] = val["val_loss"]
                        last["val_losses"] = {k.split("/", 1)[1]: v for k, v in val.items() if "/" in k}
                        row.update({k: round(v, 6) for k, v in val.items()})
                    row["elapsed_s"] = round(elapsed_before + time.perf_counter() - t_start, 2)
                    if metrics is not None:
                        metrics.write(json.dumps(row) + "\n")
                        metrics.flush()
                    bar.set_postfix(
                        {k: row[k] for k in ("loss", "val_loss", "tokens_per_s") if k in row}, refresh=False
                    )
                    t_log, steps_since_log = time.perf_counter(), 0  # eval time is not training time
                if step % cfg.checkpoint_interval == 0 or is_last:
                    t_save = time.perf_counter()
                    save()
                    t_log += time.perf_counter() - t_save  # nor is writing (and uploading) the checkpoint
                if stopped:
                    if world.is_main:
                        log.warning(
                            "stopped by signal %d at step %d: %s saved; --resume continues",
                            stop.signal or signal.SIGTERM,
                            step,
                            run.url_of(CKPT_FILE),
                        )
                    break
    finally:
        stop.restore()
    bar.close()

    ckpt_url = run.url_of(CKPT_FILE) if world.is_main else os.path.join(out_dir, CKPT_FILE)
    if step == start_step and world.is_main:
        log.info("%s is already at step %d (max_steps %d): nothing to train", ckpt_url, step, cfg.max_steps)
    trained = step - start_step
    return {
        "run_dir": run.url if world.is_main else out_dir,
        "checkpoint": ckpt_url,
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
        "stopped_by_signal": (stop.signal or signal.SIGTERM) if stopped else None,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "world_size": world.world_size,
        "strategy": cfg.strategy if world.distributed else None,
    }


def _warn_short_val(loader: MixtureLoader, cfg: PretrainConfig) -> None:
    for source, shard_loader in zip(loader.sources, loader.loaders, strict=True):
        if not shard_loader.has_val:
            what = "val split" if len(loader.sources) == 1 else f"{source.name}'s val split"
            then = "skipping evaluation" if not loader.has_val else "no val loss for it"
            n, window = shard_loader.val.num_tokens, cfg.block_size + 1
            log.warning("note: %s has %d tokens, fewer than one window of %d: %s", what, n, window, then)
