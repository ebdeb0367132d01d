"""tokenmill train-tokenizer: byte-level BPE (HF tokenizers) trained on the documents' text, in a Ray task."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from jobs.common import UsageError, run_cli
from pipeline.documents import list_document_files, read_documents
from pipeline.executor import init_ray, read_json, write_json
from tokenizer.bpe import eos_id, train_bpe


@dataclass
class TokenizerConfig:
    vocab_size: int = 8192
    min_frequency: int = 2
    max_docs: int = 0  # train on at most this many documents (0: all); enough text matters, not all of it


def stats_path(tokenizer_path: str) -> str:
    return os.path.splitext(tokenizer_path)[0] + ".stats.json"


def _train(files: list[str], output: str, cfg: TokenizerConfig) -> dict[str, Any]:
    start = time.perf_counter()
    counts = {"docs": 0, "chars": 0}

    def texts() -> Iterator[str]:
        for path in files:
            for doc in read_documents(path):
                if cfg.max_docs and counts["docs"] >= cfg.max_docs:
                    return
                counts["docs"] += 1
                counts["chars"] += len(doc.text)
                yield doc.text

    tokenizer = train_bpe(texts(), cfg.vocab_size, cfg.min_frequency)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tokenizer.save(output + ".tmp")
    os.replace(output + ".tmp", output)
    summary = {
        "stage": "train-tokenizer",
        "output": output,
        "inputs": files,
        "config": cfg.__dict__,
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": eos_id(tokenizer),
        "counters": {"docs_in": counts["docs"], "chars_in": counts["chars"]},
        "wall_seconds": round(time.perf_counter() - start, 3),
    }
    write_json(stats_path(output), summary)
    return summary


def run(input_dir: str, output: str, cfg: TokenizerConfig) -> dict[str, Any]:
    """Train unless `output` exists already (a rerun resumes past this stage); return the stage summary."""
    if os.path.exists(output) and os.path.exists(stats_path(output)):
        return {**read_json(stats_path(output)), "skipped": True}
    files = list_document_files(input_dir)
    if not files:
        raise UsageError(f"no Parquet documents in {input_dir}")
    init_ray()
    # Training is one process: the tokenizers library parallelises it with its own threads.
    return ray.get(ray.remote(num_cpus=1)(_train).remote(files, output, cfg))


def summary_line(s: dict[str, Any]) -> str:
    note = " (already trained; --overwrite to retrain)" if s.get("skipped") else ""
    return (
        f"train-tokenizer: vocab {s['vocab_size']} from {s['counters']['docs_in']} docs "
        f"({s['counters']['chars_in']} chars) in {s['wall_seconds']:.1f}s{note}\n  output: {s['output']}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill train-tokenizer",
        description="Train a byte-level BPE tokenizer (GPT-2 style, any byte sequence encodes) on the text "
        "of a document folder and save it as a tokenizers JSON file. <|endoftext|> is the EOS token.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of dedup)")
    p.add_argument("--output", "-o", required=True, help="tokenizer file to write, e.g. tokenizer.json")
    p.add_argument("--vocab-size", type=int, default=TokenizerConfig.vocab_size, help="vocabulary size")
    p.add_argument(
        "--min-frequency", type=int, default=TokenizerConfig.min_frequency, help="min pair count to merge"
    )
    p.add_argument("--max-docs", type=int, default=0, help="train on at most this many documents (0: all)")
    p.add_argument("--overwrite", action="store_true", help="retrain even if OUTPUT exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        if args.vocab_size < 257:
            raise UsageError(f"--vocab-size must be at least 257 (256 bytes + EOS), got {args.vocab_size}")
        if args.overwrite and os.path.exists(args.output):
            os.remove(args.output)
        print(
            summary_line(
                run(
                    args.input,
                    args.output,
                    TokenizerConfig(args.vocab_size, args.min_frequency, args.max_docs),
                )
            )
        )
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
