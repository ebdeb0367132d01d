"""tokenmill tokenize: documents -> Arrow token shards + manifest.json (the format in tokenizer/shards.py)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import add_stage_flags, run_stage_cli, stage_config
from tokenizer.tokenize import TokenizeConfig, tokenize


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill tokenize",
        description="Encode documents with a trained tokenizer (EOS after each document) into Arrow IPC "
        "token shards with a manifest.json, on Ray. Documents are split train/val by a hash of their id and "
        "shuffled globally with a seed: each shard holds about --shard-tokens tokens from every input file, "
        "however many files there were, and reading the shards in order reads the corpus in one random "
        "order. The folder is self-contained (tokenizer.json is copied in) and reads with plain pyarrow, "
        "polars or HF datasets. Retokenizing into the same folder with another tokenizer redoes every shard.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of dedup)")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json from train-tokenizer")
    p.add_argument("--output", "-o", required=True, help="shard folder to write (local or s3://)")
    p.add_argument(
        "--val-fraction", type=float, help=f"share of docs for val (default {TokenizeConfig.val_fraction})"
    )
    p.add_argument(
        "--shard-tokens",
        type=int,
        help=f"target tokens per shard (default {TokenizeConfig.shard_tokens:,}; ~2 bytes each in uint16)",
    )
    p.add_argument(
        "--seed", type=int, help="seed of the shuffle (default 0); the split does not depend on it"
    )
    add_stage_flags(p, "tokenize")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        flags = {"val_fraction": args.val_fraction, "shard_tokens": args.shard_tokens, "seed": args.seed}
        cfg = stage_config(TokenizeConfig, "tokenize", args.config, flags)
        return tokenize(args.input, args.tokenizer, args.output, cfg, args.overwrite)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
