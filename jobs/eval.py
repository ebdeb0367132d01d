"""tokenmill eval: a checkpoint's loss, perplexity and bits per byte over a split of a shard folder, printed
as one JSON object (thin entry point; the scoring is train/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from jobs.common import run_cli
from train.evaluate import SPLITS, evaluate_checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill eval",
        description="Score a pretrain checkpoint on a split of a shard folder: non-overlapping windows of "
        "block_size+1 tokens side by side over the whole split (or the first --max-batches batches). "
        "Prints one JSON object: loss (mean nats per token; also as val_loss on the val split), perplexity, "
        "bits_per_byte, and the windows and tokens scored.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN",
        help="pretrain run folder (its ckpt.pt is scored), or a checkpoint file in it; a path or a URL "
        "(s3://...: ckpt.pt is downloaded to the cache)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SHARDS",
        help="shard folder tokenized with the checkpoint's tokenizer; a path or a URL (copied to the cache)",
    )
    p.add_argument("--split", default="val", choices=SPLITS, help="which split to score (default: val)")
    p.add_argument(
        "--max-batches",
        type=int,
        metavar="N",
        help="score only the first N batches of windows (default: every window of the split)",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, metavar="B", help="windows per forward pass (default: 8)"
    )
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (cuda if available), cpu or cuda")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where remote folders' files are kept (default: $TOKENMILL_CACHE, else ~/.cache/tokenmill)",
    )
    return p


def _run(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        max_batches=args.max_batches,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
    )
    if result["bits_per_byte"] is None:
        print(
            f"tokenmill eval: note: {args.data}'s manifest does not count text bytes (a folder from an older "
            "tokenize), so bits_per_byte is null",
            file=sys.stderr,
        )
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
