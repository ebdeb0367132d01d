"""tokenmill generate: continue a prompt with a pretrained checkpoint; prints only the generated text, piece
by piece as it is sampled."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import run_cli
from train.generate import stream_text


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
        help="pretrain run folder (holds ckpt.pt and tokenizer.json), or a checkpoint file inside it "
        "(ckpt.pt, or an older ckpt-STEP.pt of a local run); "
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
    p.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        metavar="P",
        help="nucleus sampling: keep the fewest likeliest tokens whose probability adds up to P, in (0, 1], "
        "applied after --top-k (default: 1.0 = off)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1337,
        metavar="S",
        help="sampling seed: same seed, same text (default: 1337)",
    )
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (cuda if available), cpu or cuda")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where a remote run folder's files are kept "
        "(default: $TOKENMILL_CACHE, else ~/.cache/tokenmill)",
    )
    return p


def _run(args: argparse.Namespace) -> int:
    pieces = stream_text(
        args.checkpoint,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        device=args.device,
        cache_dir=args.cache_dir,
    )
    for piece in pieces:  # as they are sampled: a reader sees the text grow
        print(piece, end="", flush=True)
    print()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
