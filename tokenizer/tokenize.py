"""Tokenize a finished document folder into token shards and their manifest, one Ray task per part.

Every shard a task writes is named after the task (`train-KEY-000.arrow`), committed with the task, and
listed in the manifest only once every task is committed. The manifest is removed before anything in the
folder changes, so a folder never holds shards that disagree with its manifest.json: a reader finds
either a manifest that is true or none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.config import UsageError, to_table
from pipeline.documents import read_documents
from pipeline.stage import (
    Stage,
    StageResult,
    TaskRun,
    expected_fingerprint,
    run_stage,
    with_upstream,
)
from pipeline.stage_folder import MERGED, read_stage
from tokenizer.bpe import encode_documents, eos_id, load_tokenizer
from tokenizer.shards import (
    MANIFEST_FILE,
    SPLITS,
    TOKENIZER_FILE,
    Manifest,
    ShardInfo,
    TokenizerInfo,
    token_dtype,
    write_manifest,
    write_shard,
)

VERSION = f"1 tokenizers={version('tokenizers')}"


@dataclass(frozen=True)
class TokenizeConfig:
    val_fraction: float = 0.01
    max_shard_tokens: int = 100_000_000  # ~200 MB of uint16 per shard
    batch_docs: int = 512

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_shard_tokens < 1 or self.batch_docs < 1:
            raise ValueError("max_shard_tokens and batch_docs must be >= 1")


def is_val(doc_id: str, val_fraction: float) -> bool:
    """Stable split by document id: the same document lands in the same split on every run."""
    h = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


class SplitShards:
    """The documents of one split waiting to be written; a new shard starts past max_tokens."""

    def __init__(self, run: TaskRun, split: str, dtype: np.dtype, max_tokens: int) -> None:
        self.run, self.split, self.dtype, self.max_tokens = run, split, dtype, max_tokens
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
            name = f"{self.split}-{self.run.key}-{len(self.written):03d}.arrow"
            info = write_shard(self.run.output(name), self.tokens, self.doc_ids, self.dtype)
            self.written.append({**dataclasses.asdict(info), "file": name})
            self.tokens, self.doc_ids, self.num_tokens = [], [], 0


def _tokenize(run: TaskRun) -> None:
    cfg: TokenizeConfig = run.config
    tokenizer = load_tokenizer(run.context)
    dtype = token_dtype(tokenizer.get_vocab_size())
    splits = {split: SplitShards(run, split, dtype, cfg.max_shard_tokens) for split in SPLITS}

    def encode(batch: list) -> None:
        for doc, ids in zip(batch, encode_documents(tokenizer, [d.text for d in batch], dtype), strict=True):
            split = "val" if is_val(doc.id, cfg.val_fraction) else "train"
            splits[split].add(ids, doc.id)
            run.stats.add(f"{split}_docs")
            run.stats.add(f"{split}_tokens", len(ids))

    batch = []
    for doc in read_documents(run.input, columns=["id", "text"]):
        run.stats.add("docs_in")
        if not doc.text.strip():
            run.stats.drop("empty_text")
            continue
        batch.append(doc)
        if len(batch) >= cfg.batch_docs:
            encode(batch)
            batch = []
    encode(batch)
    for shards in splits.values():
        shards.flush()
    run.stats.add("docs_out", run.stats.counters["train_docs"] + run.stats.counters["val_docs"])
    run.result["shards"] = {split: shards.written for split, shards in splits.items()}


def tokenize(
    input_dir: str, tokenizer_url: str, output: str, cfg: TokenizeConfig, overwrite: bool = False
) -> StageResult:
    try:
        tokenizer_bytes = storage.read_bytes(tokenizer_url)
    except FileNotFoundError:
        raise UsageError(f"no such tokenizer file: {tokenizer_url}") from None
    docs = read_stage(input_dir)
    sha256 = hashlib.sha256(tokenizer_bytes).hexdigest()
    stage = Stage(
        "tokenize", VERSION, _tokenize, cfg, outputs=("train-*.arrow", "val-*.arrow"), context=tokenizer_url
    )
    inputs = with_upstream(docs.document_inputs(), tokenizer_sha256=sha256)
    root = storage.normalize(output)
    _drop_stale_manifest(root, expected_fingerprint(stage, inputs))
    result = run_stage(stage, inputs, root, overwrite=overwrite)
    if not result.complete:
        return result
    storage.write_bytes(storage.join(root, TOKENIZER_FILE), tokenizer_bytes)  # the folder is self-contained
    tokenizer = load_tokenizer(storage.join(root, TOKENIZER_FILE))
    splits: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    for key in sorted(result.records):
        for split, shards in json.loads(result.records[key]["result"])["shards"].items():
            splits[split].extend(ShardInfo(**s) for s in shards)
    manifest = Manifest(
        tokenizer=TokenizerInfo(TOKENIZER_FILE, sha256, tokenizer.get_vocab_size(), eos_id(tokenizer)),
        dtype=token_dtype(tokenizer.get_vocab_size()).name,
        splits=splits,
        config={**to_table(cfg), "fingerprint": result.fingerprint, "upstream": docs.fingerprint},
        input=[docs.root],
    )
    write_manifest(root, manifest)
    return result


def _drop_stale_manifest(root: str, fingerprint: str) -> None:
    """Before a run changes any shard, the manifest goes: it is rewritten once every task is committed."""
    try:
        merged = storage.read_json(storage.join(root, MERGED))
    except FileNotFoundError:
        merged = {}
    if not (merged.get("complete") and merged.get("fingerprint") == fingerprint):
        storage.remove([storage.join(root, MANIFEST_FILE)])
