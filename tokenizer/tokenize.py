"""Tokenize a finished document folder into globally shuffled token shards of a target size, on Ray.

Two waves, each a resumable stage:

  encode   OUTPUT/_work/encode, one task per part file: encode every document (EOS appended), give it a
           split (a hash of its id: the same document is in the same split on every run, whatever the seed)
           and a place in the order (a seeded hash of its id), and write it to the section of its shard:
           shard p of a split holds the order keys in [p/N, (p+1)/N).
  pack     OUTPUT, one task per shard: read its section of every encode file, sort by order key, write the
           shard. Shard p's keys all precede shard p+1's, so reading the shards in order reads the whole
           corpus in one seeded random order, and a shard holds documents of every input file.

The number of shards N per split is planned before encoding: the corpus's tokens are estimated from the part
files' sizes and the tokens per byte of a few sampled parts, so shards come out near `shard_tokens`
whatever the number of input files. Every shard a task writes is committed with the task; the manifest is
removed before anything in the folder changes and rewritten once every shard is committed, so a folder
never holds shards that disagree with its manifest.json. Once it is written, OUTPUT/_work is deleted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from pipeline import exchange, storage
from pipeline.config import UsageError, to_table
from pipeline.dedup import hash_strings
from pipeline.documents import text_bytes
from pipeline.stage import (
    Stage,
    StageResult,
    TaskInput,
    TaskRun,
    describe_changes,
    expected_fingerprint,
    refuse_config_change,
    run_stage,
    with_upstream,
)
from pipeline.stage_folder import MERGED, read_stage
from pipeline.stats import Stats
from tokenizer.bpe import encode_documents, eos_id, load_tokenizer, special_token_ids
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

VERSION = f"2 tokenizers={version('tokenizers')}"
SPLIT_SALT, ORDER_SALT = 0x5B17, 0x0D3E  # the split must not depend on the shuffle's seed
SAMPLED_PARTS, SAMPLED_BYTES = 8, 1 << 17  # what the estimate of the corpus's tokens encodes


@dataclass(frozen=True)
class TokenizeConfig:
    val_fraction: float = 0.01
    shard_tokens: int = 100_000_000  # target tokens per shard (~200 MB of uint16)
    seed: int = 0  # the documents' order: one seeded shuffle of the whole corpus
    batch_docs: int = 512

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_tokens < 1 or self.batch_docs < 1:
            raise ValueError("shard_tokens and batch_docs must be >= 1")


def val_mask(doc_ids: pa.Array, val_fraction: float) -> np.ndarray:
    """Which documents are in val: a stable hash of the id, so a document's split never changes."""
    return hash_strings(doc_ids, SPLIT_SALT) < np.uint64(min(int(val_fraction * 2**64), 2**64 - 1))


def order_keys(doc_ids: pa.Array, seed: int) -> np.ndarray:
    return hash_strings(doc_ids, seed ^ ORDER_SALT)


@dataclass(frozen=True)
class ShardPlan:
    """How many shards each split gets; section p of an encode file is shard p (train first, then val)."""

    tokenizer: str  # URL of tokenizer.json
    train: int
    val: int

    @property
    def names(self) -> list[str]:
        return [f"train-{p:05d}" for p in range(self.train)] + [f"val-{p:05d}" for p in range(self.val)]

    def sections(self, keys: np.ndarray, val: np.ndarray) -> np.ndarray:
        top = (keys >> np.uint64(32)).astype(np.uint64)  # key * N >> 64, without 128-bit products
        train_p = (top * np.uint64(self.train)) >> np.uint64(32)
        val_p = self.train + ((top * np.uint64(max(self.val, 1))) >> np.uint64(32))
        return np.where(val, val_p, train_p).astype(np.int64)


def estimate_tokens(inputs: list[TaskInput], tokenizer_url: str) -> int:
    """The corpus's tokens: its parts' sizes times the tokens per stored byte of a few parts spread over it
    (their text's bytes from the footer, times the tokens per byte of their first SAMPLED_BYTES of text)."""
    tokenizer = load_tokenizer(tokenizer_url)
    picks = sorted({round(i * (len(inputs) - 1) / max(SAMPLED_PARTS - 1, 1)) for i in range(SAMPLED_PARTS)})
    tokens = size = 0.0
    for inp in (inputs[i] for i in picks if i < len(inputs)):
        fs, path = storage.filesystem(inp.url)
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            if not parquet.metadata.num_rows:
                continue
            texts, n = [], 0
            for batch in parquet.iter_batches(batch_size=16, columns=["text"]):
                texts += batch.column("text").to_pylist()
                n = sum(len(t.encode()) for t in texts)
                if n >= SAMPLED_BYTES:
                    break
            encoded = sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False))
            stored_text = text_bytes(parquet.metadata) - 4 * parquet.metadata.num_rows
            tokens += encoded * stored_text / max(n, 1) + parquet.metadata.num_rows  # + one EOS each
            size += inp.identity["size"]
    total_size = sum(inp.identity["size"] for inp in inputs)
    return math.ceil(tokens * total_size / size) if size else 0


def plan_shards(estimated_tokens: int, cfg: TokenizeConfig, tokenizer_url: str) -> ShardPlan:
    val = estimated_tokens * cfg.val_fraction
    return ShardPlan(
        tokenizer_url,
        train=max(1, round((estimated_tokens - val) / cfg.shard_tokens)),
        val=max(1, round(val / cfg.shard_tokens)) if cfg.val_fraction else 0,
    )


# --- encode: one task per part file -----------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _tokenizer(url: str, sha256: str) -> Tokenizer:
    """A worker process loads a tokenizer once, not once per task (0.3 s for 32k tokens)."""
    return load_tokenizer(url)


def _encode(run: TaskRun) -> None:
    cfg: TokenizeConfig = run.config
    plan: ShardPlan = run.context
    tokenizer = _tokenizer(plan.tokenizer, run.identity["tokenizer_sha256"])
    dtype = token_dtype(tokenizer.get_vocab_size())
    ids, keys, sections, tokens = [], [], [], []
    fs, path = storage.filesystem(run.input)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=cfg.batch_docs, columns=["id", "text"]):
            run.stats.add("docs_in", batch.num_rows)
            empty = pc.equal(pc.utf8_trim_whitespace(batch.column("text")), "")
            if n_empty := pc.sum(empty).as_py() or 0:
                run.stats.drop("empty_text", n_empty)
                batch = batch.filter(pc.invert(empty))
            if not batch.num_rows:
                continue
            doc_ids = batch.column("id")
            run.stats.add("text_bytes", pc.sum(pc.binary_length(batch.column("text"))).as_py())
            order = order_keys(doc_ids, cfg.seed)
            ids.append(doc_ids)
            keys.append(order)
            sections.append(plan.sections(order, val_mask(doc_ids, cfg.val_fraction)))
            tokens += encode_documents(tokenizer, batch.column("text").to_pylist(), dtype)
    P = len(plan.names)
    schema = _section_schema(dtype)
    blobs: list[bytes | memoryview] = [b""] * P
    if tokens:
        section = np.concatenate(sections)
        by_section = np.argsort(section, kind="stable")
        columns = [pa.array(np.concatenate(keys)), _large_lists(tokens), pa.concat_arrays(ids)]
        table = pa.table(columns, schema=schema).take(by_section)
        bounds = np.searchsorted(section[by_section], np.arange(P + 1))
        for p in range(P):
            if bounds[p + 1] > bounds[p]:
                part = table.slice(bounds[p], bounds[p + 1] - bounds[p]).combine_chunks().to_batches()[0]
                blobs[p] = part.serialize()
    exchange.write_byte_sections(run.output(f"encoded-{run.key}.bin"), blobs)


def _section_schema(dtype: np.dtype) -> pa.Schema:
    """A shard's columns plus the order key; 64-bit offsets, as one part file may exceed 2**31 tokens."""
    return pa.schema(
        [
            pa.field("key", pa.uint64(), nullable=False),
            pa.field("tokens", pa.large_list(pa.from_numpy_dtype(dtype)), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
        ]
    )


def _large_lists(token_lists: list[np.ndarray]) -> pa.LargeListArray:
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in token_lists], out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(token_lists)))


# --- pack: one task per shard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _PackContext:
    encoded: list[str]  # every encode file, in key order
    dtype: str


def _pack(run: TaskRun) -> None:
    ctx: _PackContext = run.context
    schema = _section_schema(np.dtype(ctx.dtype))
    blobs = exchange.read_sections(ctx.encoded, run.identity["section"])
    batches = [pa.ipc.read_record_batch(pa.py_buffer(b.view(np.uint8)), schema) for b in blobs if len(b)]
    split = run.key.split("-")[0]
    run.result["split"] = split
    if not batches:
        return  # an empty shard is not written
    table = pa.Table.from_batches(batches, schema).combine_chunks()
    table = table.take(np.argsort(table.column("key").to_numpy(), kind="stable"))
    info = write_shard(
        run.output(f"{run.key}.arrow"), table.column("tokens").combine_chunks(), table.column("doc_id")
    )
    run.result["shard"] = dataclasses.asdict(info)
    run.stats.add(f"{split}_docs", info.num_docs)
    run.stats.add(f"{split}_tokens", info.num_tokens)
    run.stats.add("docs_out", info.num_docs)


# --- the stage --------------------------------------------------------------------------------------------


def tokenize(
    input_dir: str, tokenizer_url: str, output: str, cfg: TokenizeConfig, overwrite: bool = False
) -> StageResult:
    started = time.perf_counter()
    try:
        tokenizer_bytes = storage.read_bytes(tokenizer_url)
    except FileNotFoundError:
        raise UsageError(f"no such tokenizer file: {tokenizer_url}") from None
    docs = read_stage(input_dir)
    inputs = docs.document_inputs()
    if not inputs:
        raise UsageError(f"no documents in {input_dir}")
    root = storage.normalize(output)
    work = storage.join(root, "_work", "encode")
    # The plan is part of every fingerprint; it depends only on the inputs and the tokenizer.
    plan = plan_shards(estimate_tokens(inputs, tokenizer_url), cfg, tokenizer_url)
    vocab_size = load_tokenizer(tokenizer_url).get_vocab_size()
    sha256 = hashlib.sha256(tokenizer_bytes).hexdigest()
    encode = Stage("tokenize-encode", VERSION, _encode, cfg, outputs=("encoded-*.bin",), context=plan)
    encode_inputs = with_upstream(inputs, tokenizer_sha256=sha256, shards=f"{plan.train}+{plan.val}")
    encoded_fp = expected_fingerprint(encode, encode_inputs)
    pack_inputs = [
        TaskInput(name, work, {"encoded": encoded_fp, "section": p}) for p, name in enumerate(plan.names)
    ]
    pack_ctx = _PackContext(
        [storage.join(work, f"encoded-{inp.key}.bin") for inp in sorted(encode_inputs, key=lambda i: i.key)],
        token_dtype(vocab_size).name,
    )
    pack = Stage("tokenize", VERSION, _pack, cfg, outputs=("train-*.arrow", "val-*.arrow"), context=pack_ctx)
    final_fp = expected_fingerprint(pack, pack_inputs)
    merged = _merged(root)
    if (
        merged.get("complete")
        and merged.get("fingerprint") == final_fp
        and storage.exists(storage.join(root, MANIFEST_FILE))
    ):
        result = run_stage(pack, pack_inputs, root, overwrite=overwrite, started=started)  # skips every task
        result.stats = Stats.from_json(
            merged
        )  # the counters of both waves, as the run that made them left them
        return result
    if merged.get("stage") == "tokenize":  # another recipe's shards: say what changed before touching them
        refuse_config_change(f"{root} was", describe_changes(merged, pack.recipe(pack_inputs[0])), overwrite)
    storage.remove([storage.join(root, MANIFEST_FILE)])  # before any shard changes
    encoded = run_stage(encode, encode_inputs, work, overwrite=overwrite)
    if not encoded.complete:
        return dataclasses.replace(encoded, stage="tokenize", output=root)
    result = run_stage(pack, pack_inputs, root, overwrite=overwrite, started=started, carried=encoded.stats)
    if not result.complete:
        return result
    _write_manifest(root, tokenizer_bytes, sha256, result, cfg, docs.root, docs.fingerprint)
    work_root = storage.join(root, "_work")
    storage.remove([storage.join(work_root, name) for name in storage.list_tree(work_root)])
    return result


def _merged(root: str) -> dict:
    try:
        return storage.read_json(storage.join(root, MERGED))
    except FileNotFoundError:
        return {}


def _write_manifest(
    root: str,
    tokenizer_bytes: bytes,
    sha256: str,
    result: StageResult,
    cfg: TokenizeConfig,
    upstream_root: str,
    upstream_fp: str,
) -> None:
    storage.write_bytes(storage.join(root, TOKENIZER_FILE), tokenizer_bytes)  # the folder is self-contained
    tokenizer = load_tokenizer(storage.join(root, TOKENIZER_FILE))
    splits: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    for key in sorted(result.records):
        shard = json.loads(result.records[key]["result"])
        if "shard" in shard:
            splits[shard["split"]].append(ShardInfo(**shard["shard"]))
    vocab_size = tokenizer.get_vocab_size()
    manifest = Manifest(
        tokenizer=TokenizerInfo(
            TOKENIZER_FILE, sha256, vocab_size, eos_id(tokenizer), special_token_ids(tokenizer)
        ),
        dtype=token_dtype(vocab_size).name,
        splits=splits,
        config={**to_table(cfg), "fingerprint": result.fingerprint, "upstream": upstream_fp},
        input=[upstream_root],
    )
    write_manifest(root, manifest)
