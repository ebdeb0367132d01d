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
    SPLITS,
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


class SplitShards:
    """The documents of one split waiting to be written; a new shard starts past max_tokens."""

    def __init__(self, folder: str, split: str, task: int, dtype: np.dtype, max_tokens: int) -> None:
        self.folder, self.split, self.task, self.dtype, self.max_tokens = (
            folder,
            split,
            task,
            dtype,
            max_tokens,
        )
        self.tokens: list[np.ndarray] = []
        self.doc_ids: list[str] = []
        self.num_tokens = 0
        self.written: list[dict[str, Any]] = []

    def add(self, tokens: np.ndarray, doc_id: str) -> None:
        self.tokens.append(tokens)
        self.doc_ids.append(doc_id)
        self.num_tokens += len(tokens)
        if self.num_tokens >= self.max_tokens:
            self.flush()

    def flush(self) -> None:
        if self.doc_ids:
            path = f"{self.folder}/{self.split}-{self.task:05d}-{len(self.written):03d}.arrow"
            self.written.append(dataclasses.asdict(write_shard(path, self.tokens, self.doc_ids, self.dtype)))
            self.tokens, self.doc_ids, self.num_tokens = [], [], 0


def tokenize_file(i: int, path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    cfg = TokenizeConfig(**{k: v for k, v in config.items() if k != "tokenizer"})
    tokenizer = load_tokenizer(config["tokenizer"])
    dtype = token_dtype(tokenizer.get_vocab_size())
    stats = Stats()
    splits = {split: SplitShards(layout.root, split, i, dtype, cfg.max_shard_tokens) for split in SPLITS}

    def encode(batch: list) -> None:
        for doc, ids in zip(batch, encode_documents(tokenizer, [d.text for d in batch], dtype), strict=True):
            split = "val" if is_val(doc.id, cfg.val_fraction) else "train"
            splits[split].add(ids, doc.id)
            stats.add(f"{split}_docs")
            stats.add(f"{split}_tokens", len(ids))

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
    for shards in splits.values():
        shards.flush()
    stats.add("docs_out", stats.counters["train_docs"] + stats.counters["val_docs"])
    write_json(shard_list_path(layout, i), {split: shards.written for split, shards in splits.items()})
    return stats


def run(input_dir: str, tokenizer_path: str, output: str, cfg: TokenizeConfig | None = None) -> StageResult:
    cfg = cfg or TokenizeConfig()
    if not os.path.exists(tokenizer_path):
        raise UsageError(f"no such tokenizer file: {tokenizer_path}")
    files = list_document_files(input_dir)
    os.makedirs(output, exist_ok=True)
    local_tokenizer = os.path.join(output, TOKENIZER_FILE)  # the shard folder is self-contained
    tokenizer_sha256 = sha256_file(tokenizer_path)
    if not os.path.exists(local_tokenizer) or sha256_file(local_tokenizer) != tokenizer_sha256:
        shutil.copyfile(tokenizer_path, local_tokenizer)
    config = {**dataclasses.asdict(cfg), "tokenizer": os.path.abspath(local_tokenizer)}
    result = run_stage("tokenize", tokenize_file, files, output, config)
    if result.failed:
        return result

    tokenizer = load_tokenizer(local_tokenizer)
    splits: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    for i in range(len(files)):
        for split, shards in read_json(shard_list_path(StageLayout(output), i)).items():
            splits[split].extend(ShardInfo(**s) for s in shards)
    manifest = Manifest(
        tokenizer=TokenizerInfo(
            TOKENIZER_FILE, tokenizer_sha256, tokenizer.get_vocab_size(), eos_id(tokenizer)
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
