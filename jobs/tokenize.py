"""tokenmill tokenize: documents -> Arrow token shards + manifest.json (the format in tokenizer/shards.py)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.common import UsageError, dataclass_from_table, run_stage_cli
from pipeline.documents import list_document_files, read_documents
from pipeline.executor import StageLayout, StageResult, read_json, run_stage, write_json
from pipeline.stats import Stats
from tokenizer.bpe import encode_documents, eos_id, load_tokenizer
from tokenizer.shards import (
    TOKENIZER_FILE,
    Manifest,
    ShardInfo,
    TokenizerInfo,
    sha256_file,
    token_dtype,
    write_manifest,
    write_shard,
)


@dataclass
class TokenizeConfig:
    val_fraction: float = 0.01
    max_shard_tokens: int = 100_000_000  # ~200 MB of uint16 per shard
    batch_docs: int = 512


def is_val(doc_id: str, val_fraction: float) -> bool:
    """Stable split by document id: the same document lands in the same split on every run."""
    h = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


def shard_list_path(layout: StageLayout, i: int) -> str:
    return f"{layout.root}/stats/part-{i:05d}.shards.json"


def tokenize_file(i: int, path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    cfg = TokenizeConfig(**{k: v for k, v in config.items() if k != "tokenizer"})
    tokenizer = load_tokenizer(config["tokenizer"])
    dtype = token_dtype(tokenizer.get_vocab_size())
    stats = Stats()
    pending: dict[str, tuple[list[np.ndarray], list[str]]] = {"train": ([], []), "val": ([], [])}
    pending_tokens = {"train": 0, "val": 0}
    written: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}

    def flush(split: str) -> None:
        tokens, ids = pending[split]
        if ids:
            name = f"{split}-{i:05d}-{len(written[split]):03d}.arrow"
            written[split].append(
                dataclasses.asdict(write_shard(f"{layout.root}/{name}", tokens, ids, dtype))
            )
            pending[split] = ([], [])
            pending_tokens[split] = 0

    def encode(batch: list) -> None:
        for doc, ids in zip(batch, encode_documents(tokenizer, [d.text for d in batch], dtype), strict=True):
            split = "val" if is_val(doc.id, cfg.val_fraction) else "train"
            pending[split][0].append(ids)
            pending[split][1].append(doc.id)
            stats.add(f"{split}_docs")
            stats.add(f"{split}_tokens", len(ids))
            pending_tokens[split] += len(ids)
            if pending_tokens[split] >= cfg.max_shard_tokens:
                flush(split)

    batch = []
    for doc in read_documents(path):
        stats.add("docs_in")
        if not doc.text.strip():
            stats.drop("empty_text")
            continue
        batch.append(doc)
        if len(batch) >= cfg.batch_docs:
            encode(batch)
            batch = []
    encode(batch)
    flush("train")
    flush("val")
    stats.add("docs_out", stats.counters["train_docs"] + stats.counters["val_docs"])
    write_json(shard_list_path(layout, i), written)
    return stats


def run(input_dir: str, tokenizer_path: str, output: str, cfg: TokenizeConfig | None = None) -> StageResult:
    cfg = cfg or TokenizeConfig()
    if not os.path.exists(tokenizer_path):
        raise UsageError(f"no such tokenizer file: {tokenizer_path}")
    files = list_document_files(input_dir)
    os.makedirs(output, exist_ok=True)
    local_tokenizer = os.path.join(output, TOKENIZER_FILE)  # the shard folder is self-contained
    if not os.path.exists(local_tokenizer) or sha256_file(local_tokenizer) != sha256_file(tokenizer_path):
        shutil.copyfile(tokenizer_path, local_tokenizer)
    config = {**dataclasses.asdict(cfg), "tokenizer": os.path.abspath(local_tokenizer)}
    result = run_stage("tokenize", tokenize_file, files, output, config)
    if result.failed:
        return result

    tokenizer = load_tokenizer(local_tokenizer)
    splits: dict[str, list[ShardInfo]] = {"train": [], "val": []}
    for i in range(len(files)):
        for split, shards in read_json(shard_list_path(StageLayout(output), i)).items():
            splits[split].extend(ShardInfo(**s) for s in shards)
    manifest = Manifest(
        tokenizer=TokenizerInfo(
            TOKENIZER_FILE, sha256_file(local_tokenizer), tokenizer.get_vocab_size(), eos_id(tokenizer)
        ),
        dtype=token_dtype(tokenizer.get_vocab_size()).name,
        splits=splits,
        config=dataclasses.asdict(cfg),
        input=files,
    )
    write_manifest(output, manifest)
    return result


def config_from_table(table: dict[str, Any]) -> TokenizeConfig:
    return dataclass_from_table(TokenizeConfig, table, "tokenize")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill tokenize",
        description="Encode documents with a trained tokenizer (EOS after each document) into Arrow IPC "
        "token shards with a manifest.json, split train/val by a hash of the document id. The folder is "
        "self-contained (tokenizer.json is copied in) and readable with plain pyarrow.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of dedup)")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json from train-tokenizer")
    p.add_argument("--output", "-o", required=True, help="shard folder to write")
    p.add_argument(
        "--val-fraction", type=float, default=TokenizeConfig.val_fraction, help="share of docs for val"
    )
    p.add_argument(
        "--max-shard-tokens",
        type=int,
        default=TokenizeConfig.max_shard_tokens,
        help="start a new shard past this",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> StageResult:
        if not 0 <= args.val_fraction < 1:
            raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
        cfg = TokenizeConfig(val_fraction=args.val_fraction, max_shard_tokens=args.max_shard_tokens)
        return run(args.input, args.tokenizer, args.output, cfg)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
