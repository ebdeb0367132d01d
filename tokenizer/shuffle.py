"""The global shuffle of tokenize: documents from every part file into shards of one seeded random order.

Each document gets a split (a hash of its id: a document never changes split, whatever the seed) and an
order key (a seeded hash of its id). Shard p of a split holds the keys in [p/N, (p+1)/N), sorted, so
reading the shards in order reads the whole corpus in one random order.

  encode   one task per part file: encode every document (EOS appended) and write it to the section of its
           shard in `encoded-KEY.bin` (pipeline.exchange; a section is serialized Arrow record batches)
  regroup  only when there are more part files than `fan_in`: one task per (chunk of fan_in encode files,
           block of fan_in shards) joins their sections into `regrouped-cC-bB.bin`, so that no pack task
           reads more than fan_in files. Without it, S shards over M parts cost S x M ranged reads (2.7
           billion for 30,000 shards of 90,000 parts); with it about 2 x S x M / fan_in.
  pack     one task per shard: read its sections, sort by key, write the shard (tokenizer.shards)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from pipeline import exchange, storage
from pipeline.dedup import hash_strings
from pipeline.stage import TaskRun
from tokenizer.bpe import encode_documents, load_tokenizer
from tokenizer.shards import token_dtype, write_shard

SPLIT_SALT, ORDER_SALT = 0x5B17, 0x0D3E  # the split must not depend on the shuffle's seed


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
    def shards(self) -> int:
        return self.train + self.val

    @property
    def names(self) -> list[str]:
        return [f"train-{p:05d}" for p in range(self.train)] + [f"val-{p:05d}" for p in range(self.val)]

    def sections(self, keys: np.ndarray, val: np.ndarray) -> np.ndarray:
        top = (keys >> np.uint64(32)).astype(np.uint64)  # key * N >> 64, without 128-bit products
        train_p = (top * np.uint64(self.train)) >> np.uint64(32)
        val_p = self.train + ((top * np.uint64(max(self.val, 1))) >> np.uint64(32))
        return np.where(val, val_p, train_p).astype(np.int64)


# --- encode: one task per part file -----------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _tokenizer(url: str, sha256: str) -> Tokenizer:
    """A worker process loads a tokenizer once, not once per task (0.3 s for 32k tokens)."""
    return load_tokenizer(url)


def encode_part(run: TaskRun) -> None:
    cfg: Any = run.config  # tokenizer.tokenize.TokenizeConfig
    plan: ShardPlan = run.context
    tokenizer = _tokenizer(plan.tokenizer, run.identity["tokenizer_sha256"])
    dtype = token_dtype(tokenizer.get_vocab_size())
    ids, keys, sections, sizes, tokens = [], [], [], [], []
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
            text_bytes = pc.binary_length(batch.column("text")).to_numpy()
            run.stats.add("text_bytes", int(text_bytes.sum()))
            sizes.append(text_bytes.astype(np.uint32))
            order = order_keys(doc_ids, cfg.seed)
            ids.append(doc_ids)
            keys.append(order)
            sections.append(plan.sections(order, val_mask(doc_ids, cfg.val_fraction)))
            tokens += encode_documents(tokenizer, batch.column("text").to_pylist(), dtype)
    P = plan.shards
    schema = _section_schema(dtype)
    blobs: list[bytes | memoryview] = [b""] * P
    if tokens:
        section = np.concatenate(sections)
        by_section = np.argsort(section, kind="stable")
        columns = [
            pa.array(np.concatenate(keys)),
            pa.array(np.concatenate(sizes)),
            _large_lists(tokens),
            pa.concat_arrays(ids),
        ]
        table = pa.table(columns, schema=schema).take(by_section)
        bounds = np.searchsorted(section[by_section], np.arange(P + 1))
        for p in range(P):
            if bounds[p + 1] > bounds[p]:
                part = table.slice(bounds[p], bounds[p + 1] - bounds[p]).combine_chunks().to_batches()[0]
                blobs[p] = part.serialize()
    exchange.write_byte_sections(run.output(f"encoded-{run.key}.bin"), blobs)


def _section_schema(dtype: np.dtype) -> pa.Schema:
    """A shard's columns plus the order key and the text's UTF-8 bytes (for bits per byte); 64-bit offsets,
    as one part file may exceed 2**31 tokens."""
    return pa.schema(
        [
            pa.field("key", pa.uint64(), nullable=False),
            pa.field("text_bytes", pa.uint32(), nullable=False),
            pa.field("tokens", pa.large_list(pa.from_numpy_dtype(dtype)), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
        ]
    )


def _large_lists(token_lists: list[np.ndarray]) -> pa.LargeListArray:
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in token_lists], out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(token_lists)))


# --- regroup and pack -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sections:
    """Where each shard's sections are: in every encode file, or (regrouped) in one file per chunk."""

    encoded: list[str]  # the encode files, in key order
    regrouped: str | None  # the regroup folder, when there are more encode files than fan_in
    fan_in: int
    shards: int
    dtype: str

    @property
    def chunks(self) -> int:
        return math.ceil(len(self.encoded) / self.fan_in)

    @property
    def blocks(self) -> int:
        return math.ceil(self.shards / self.fan_in)

    def regrouped_file(self, chunk: int, block: int) -> str:
        return f"regrouped-c{chunk:05d}-b{block:05d}.bin"

    def of_shard(self, shard: int) -> tuple[list[str], int]:
        """The files holding shard's sections, and its section number in them."""
        if self.regrouped is None:
            return self.encoded, shard
        block, section = divmod(shard, self.fan_in)
        files = [self.regrouped_file(c, block) for c in range(self.chunks)]
        return [storage.join(self.regrouped, f) for f in files], section


def regroup(run: TaskRun) -> None:
    """Join sections block*fan_in.. of a chunk of encode files into one file: bytes are copied, not parsed."""
    where: Sections = run.context
    chunk, block = run.identity["chunk"], run.identity["block"]
    files = where.encoded[chunk * where.fan_in : (chunk + 1) * where.fan_in]
    first, stop = block * where.fan_in, min(where.shards, (block + 1) * where.fan_in)
    spans = exchange.read_spans(files, first, stop)
    joined = [
        b"".join(data[offsets[k] : offsets[k + 1]] for data, offsets, _ in spans) for k in range(stop - first)
    ]
    exchange.write_byte_sections(run.output(where.regrouped_file(chunk, block)), joined)


def _batches(blob: np.ndarray, schema: pa.Schema) -> list[pa.RecordBatch]:
    if not len(blob):
        return []
    messages = pa.ipc.MessageReader.open_stream(pa.py_buffer(blob.view(np.uint8)))
    return [pa.ipc.read_record_batch(message, schema) for message in messages]


def pack_shard(run: TaskRun) -> None:
    where: Sections = run.context
    schema = _section_schema(np.dtype(where.dtype))
    files, section = where.of_shard(run.identity["section"])
    batches = [b for blob in exchange.read_sections(files, section) for b in _batches(blob, schema)]
    split = run.key.split("-")[0]
    run.result["split"] = split
    if not batches:
        return  # an empty shard is not written
    table = pa.Table.from_batches(batches, schema).combine_chunks()
    table = table.take(np.argsort(table.column("key").to_numpy(), kind="stable"))
    info = write_shard(
        run.output(f"{run.key}.arrow"), table.column("tokens").combine_chunks(), table.column("doc_id")
    )
    info.text_bytes = int(pc.sum(table.column("text_bytes")).as_py())
    run.result["shard"] = dataclasses.asdict(info)
    run.stats.add(f"{split}_docs", info.num_docs)
    run.stats.add(f"{split}_tokens", info.num_tokens)
    run.stats.add(f"{split}_text_bytes", info.text_bytes)
    run.stats.add("docs_out", info.num_docs)
