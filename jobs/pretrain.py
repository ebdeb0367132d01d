"""tokenmill pretrain: train the GPT on a shard folder or a weighted mixture of several (thin entry point;
the loop is train/pretrain.py). One process, `torchrun --nproc-per-node N -m jobs.pretrain ...`, or
`--num-workers N` on Ray (train/ray_train.py)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from jobs.common import run_cli
from pipeline import storage
from train.checkpoint import CKPT_FILE
from train.config import config_from_dict, load_config_file, with_depth
from train.pretrain import PretrainConfig, pretrain, resume_config

# CLI flag -> PretrainConfig field; each overrides the checkpoint's and the --config file's value.
OVERRIDES = (
    "max_steps",
    "seed",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "batch_size",
    "grad_accum",
    "lr",
    "device",
    "dtype",
    "compile",
    "strategy",
    "keep_checkpoints",
    "log_interval",
    "eval_interval",
    "checkpoint_interval",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill pretrain",
        description="Pretrain a GPT on a tokenmill shard folder, or a weighted mixture of several. Writes "
        "RUN/ckpt.pt, RUN/tokenizer.json and RUN/metrics.jsonl (one JSON line per logged step). Settings "
        "come from the built-in defaults (the CPU demo size), then --config, then the flags below; with "
        "--resume, from the checkpoint first.",
    )
    p.add_argument(
        "--data",
        action="append",
        metavar="SHARDS[:WEIGHT]",
        help="shard folder with manifest.json (the output of `tokenmill tokenize`), a path or a URL "
        "(s3://...: copied to the cache, every file checked against the manifest). Repeat it for a mixture: "
        "`--data web:0.7 --data books:0.3` draws each window of a batch from web with probability 0.7 "
        "(weights default to 1 and are normalised; the folders must share one tokenizer; val_loss is the "
        "weighted mean of each folder's val_loss/NAME). The weight is what follows the last ':' when it is "
        "a number, so s3://bucket/x is a folder and a folder named x:2 is written x:2:1. Instead of --data, "
        'the --config file\'s [pretrain] table may give data = ["web:0.7", "books:0.3"] (or one folder '
        "as a string); on --resume the checkpoint's data is the default",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="RUN",
        help="run folder to write (created if missing), a path or a URL (s3://...: written in the cache "
        "and uploaded at every checkpoint)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where copies of remote shard and run folders are kept "
        "(default: $TOKENMILL_CACHE, else ~/.cache/tokenmill)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML with [model] and [pretrain] tables, e.g. configs/model/tiny.toml",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN/ckpt.pt exactly where it stopped; "
        "without it an existing checkpoint is never overwritten",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="total optimizer steps (raise it with --resume to extend a run)",
    )
    p.add_argument("--seed", type=int, metavar="S", help="seed for the initial weights and the batch order")
    p.add_argument(
        "--depth",
        type=int,
        metavar="D",
        help="the size in one knob: D blocks of width 64·D, heads of 128 (nanochat's rule; 12 is ~124M "
        "parameters with a 50k vocabulary); --n-layer/--n-head/--n-embd given too win",
    )
    p.add_argument("--n-layer", type=int, metavar="N", help="transformer blocks")
    p.add_argument("--n-head", type=int, metavar="N", help="attention heads per block (must divide --n-embd)")
    p.add_argument("--n-embd", type=int, metavar="N", help="embedding width")
    p.add_argument("--block-size", type=int, metavar="N", help="context length in tokens")
    p.add_argument("--batch-size", type=int, metavar="N", help="sequences per micro-batch (per process)")
    p.add_argument(
        "--grad-accum",
        type=int,
        metavar="N",
        help="micro-batches per optimizer step, over all processes: the global batch is batch-size x "
        "grad-accum sequences whatever the number of processes (so it must be a multiple of it)",
    )
    p.add_argument("--lr", type=float, metavar="LR", help="peak learning rate (warmup, then cosine decay)")
    p.add_argument("--device", metavar="DEV", help="auto (this process's GPU if any, else cpu), cpu or cuda")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        help="auto: bfloat16 autocast on GPUs that have it, float32 elsewhere",
    )
    p.add_argument(
        "--compile",
        type=lambda v: {"true": True, "false": False, "auto": "auto"}[v.lower()],
        metavar="{auto,true,false}",
        help="torch.compile the model (auto: on GPU only)",
    )
    p.add_argument(
        "--strategy",
        choices=("ddp", "fsdp"),
        help="with several processes: ddp replicates the model, fsdp (FSDP2) shards weights, gradients and "
        "optimizer state across them, for models that do not fit one device (default: ddp)",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        metavar="N",
        help="numbered ckpt-STEP.pt files kept beside ckpt.pt, the latest (default: 2; 0: ckpt.pt only)",
    )
    p.add_argument("--log-interval", type=int, metavar="N", help="steps between metrics.jsonl rows")
    p.add_argument("--eval-interval", type=int, metavar="N", help="steps between val losses")
    p.add_argument("--checkpoint-interval", type=int, metavar="N", help="steps between checkpoints")
    ray = p.add_argument_group(
        "Ray",
        "Run the same loop on a Ray cluster with Ray Train, e.g. `ray job submit --working-dir . -- "
        "python -m jobs.pretrain --num-workers 4 --data s3://... --output s3://...`. Without these, one "
        "process runs "
        "(or torchrun's processes: `torchrun --nproc-per-node 2 -m jobs.pretrain ...`).",
    )
    ray.add_argument(
        "--num-workers",
        type=int,
        metavar="N",
        help="Ray Train workers (one process each) on the cluster RAY_ADDRESS names, else a local Ray",
    )
    ray.add_argument("--use-gpu", action="store_true", help="one GPU per Ray worker (NCCL)")
    ray.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs Ray reserves per worker (default 1)",
    )
    return p


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # notes go to stderr
    resuming = args.resume and storage.exists(storage.join(args.output, CKPT_FILE))
    cfg = resume_config(args.output, args.cache_dir) if resuming else PretrainConfig()
    if args.config:
        cfg = load_config_file(args.config, cfg)
    if args.depth is not None:
        cfg = with_depth(cfg, args.depth)
    cfg = config_from_dict({k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}, cfg)
    if args.num_workers:
        from train.ray_train import pretrain_on_ray

        summary = pretrain_on_ray(
            args.data or None,
            args.output,
            cfg,
            args.resume,
            args.num_workers,
            use_gpu=args.use_gpu,
            cpus_per_worker=args.cpus_per_worker,
            cache_dir=args.cache_dir,
        )
    else:
        summary = pretrain(args.data or None, args.output, cfg, resume=args.resume, cache_dir=args.cache_dir)
    if int(os.environ.get("RANK", "0")):
        return 0  # under torchrun, rank 0 speaks for all
    val = f", val_loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else ""
    if summary["val_losses"]:
        val += f" ({', '.join(f'{name} {loss:.4f}' for name, loss in summary['val_losses'].items())})"
    loss = f"{summary['loss']:.4f}" if summary["loss"] is not None else "n/a"
    workers = (
        f", {summary['world_size']} processes ({summary['strategy']})" if summary["world_size"] > 1 else ""
    )
    print(
        f"pretrain: step {summary['step']}, loss {loss}{val}, {summary['tokens_per_s']} tokens/s, "
        f"{summary['elapsed_s']:.0f}s{workers}\n  output: {summary['checkpoint']}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
