"""tokenmill pretrain: train the GPT on a shard folder or a weighted mixture of several (thin entry point;
the loop is train/pretrain.py)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from jobs.common import run_cli
from pipeline import storage
from train.checkpoint import CKPT_FILE
from train.config import config_from_dict, load_config_file
from train.pretrain import PretrainConfig, pretrain, resume_config

# CLI flag -> PretrainConfig field; each overrides the checkpoint's and the --config file's value.
OVERRIDES = ("max_steps", "seed", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "lr", "device")


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
    p.add_argument("--n-layer", type=int, metavar="N", help="transformer blocks")
    p.add_argument("--n-head", type=int, metavar="N", help="attention heads per block (must divide --n-embd)")
    p.add_argument("--n-embd", type=int, metavar="N", help="embedding width")
    p.add_argument("--block-size", type=int, metavar="N", help="context length in tokens")
    p.add_argument("--batch-size", type=int, metavar="N", help="sequences per optimizer step")
    p.add_argument("--lr", type=float, metavar="LR", help="peak learning rate (warmup, then cosine decay)")
    p.add_argument("--device", metavar="DEV", help="auto (cuda if available), cpu, cuda or cuda:N")
    return p


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # notes go to stderr
    resuming = args.resume and storage.exists(storage.join(args.output, CKPT_FILE))
    cfg = resume_config(args.output, args.cache_dir) if resuming else PretrainConfig()
    if args.config:
        cfg = load_config_file(args.config, cfg)
    cfg = config_from_dict({k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}, cfg)
    summary = pretrain(args.data or None, args.output, cfg, resume=args.resume, cache_dir=args.cache_dir)
    val = f", val_loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else ""
    if summary["val_losses"]:
        val += f" ({', '.join(f'{name} {loss:.4f}' for name, loss in summary['val_losses'].items())})"
    loss = f"{summary['loss']:.4f}" if summary["loss"] is not None else "n/a"
    print(
        f"pretrain: step {summary['step']}, loss {loss}{val}, {summary['tokens_per_s']} tokens/s, "
        f"{summary['elapsed_s']:.0f}s\n  output: {summary['checkpoint']}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
