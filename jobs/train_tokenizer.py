"""tokenmill train-tokenizer: byte-level BPE (HF tokenizers) trained on the documents' text, in a Ray task."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from jobs.common import add_stage_flags, run_cli, stage_config
from tokenizer.train import TokenizerConfig, train_tokenizer


def summary_line(s: dict[str, Any]) -> str:
    note = " (already trained from these documents with this config)" if s.get("skipped") else ""
    return (
        f"train-tokenizer: vocab {s['vocab_size']} from a sample of {s['counters']['docs_in']:,} docs "
        f"({s['counters']['bytes_in']:,} bytes, {s['sample']['fraction']:.1%} of the corpus) "
        f"in {s['wall_seconds']:.1f}s{note}\n  output: {s['output']}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill train-tokenizer",
        description="Train a byte-level BPE tokenizer (any byte sequence encodes; GPT-4's pre-tokenisation "
        "split) on a uniform random sample of a document folder's text, drawn on Ray under a byte budget, "
        "and save it as a tokenizers JSON file (it loads with transformers' PreTrainedTokenizerFast too). "
        "FILE.stats.json beside it records what it was trained from. Special tokens: <|endoftext|> (EOS), "
        "<|pad|>, <|system|>, <|user|>, <|assistant|>, <|end|>. A rerun on the same documents with the same "
        "config does nothing.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of dedup)")
    p.add_argument("--output", "-o", required=True, help="tokenizer file to write, e.g. tokenizer.json")
    p.add_argument("--vocab-size", type=int, help=f"vocabulary size (default {TokenizerConfig.vocab_size})")
    p.add_argument("--min-frequency", type=int, help="min pair count to merge (default 2)")
    p.add_argument(
        "--sample-bytes",
        type=int,
        help="train on a uniform random sample of about this much text, in UTF-8 bytes "
        f"(default {TokenizerConfig.sample_bytes:,}; the whole corpus if it is smaller)",
    )
    p.add_argument("--seed", type=int, help="seed of the sample (default 0)")
    add_stage_flags(p, "tokenizer")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        flags = {
            "vocab_size": args.vocab_size,
            "min_frequency": args.min_frequency,
            "sample_bytes": args.sample_bytes,
            "seed": args.seed,
        }
        cfg = stage_config(TokenizerConfig, "tokenizer", args.config, flags)
        print(summary_line(train_tokenizer(args.input, args.output, cfg, args.overwrite)))
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
