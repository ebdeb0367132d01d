"""tokenmill generate: continue a prompt with a pretrained checkpoint; prints only the generated text."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import run_cli
from train.generate import generate_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill generate",
        description="Sample a continuation of --prompt from a pretrain run folder. Only the generated text "
        "goes to stdout (the prompt is not repeated), so it can be piped.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN",
        help="pretrain run folder (holds ckpt.pt and tokenizer.json), or the ckpt.pt inside it; "
        "a path or a URL (s3://...: its files are downloaded to the cache)",
    )
    p.add_argument("--prompt", required=True, metavar="TEXT", help="text to continue (may be empty)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=200,
        metavar="N",
        help="most tokens to generate; stops earlier at end-of-text (default: 200)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        metavar="T",
        help="sampling temperature; 0 = greedy, deterministic (default: 0.8)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=200,
        metavar="K",
        help="sample only from the K likeliest tokens; 0 = no limit (default: 200)",
    )
    p.add_argument("--seed", type=int, default=1337, metavar="S", help="sampling seed (default: 1337)")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (cuda if available), cpu or cuda")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where a remote run folder's files are kept "
        "(default: $TOKENMILL_CACHE, else ~/.cache/tokenmill)",
    )
    return p


def _run(args: argparse.Namespace) -> int:
    text = generate_text(
        args.checkpoint,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        device=args.device,
        cache_dir=args.cache_dir,
    )
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
