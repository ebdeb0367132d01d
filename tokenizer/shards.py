"""The token shard format: the one contract between the data stages and the trainer, defined here only.

A shard folder holds `manifest.json`, `tokenizer.json` and shards. A shard is an uncompressed Arrow IPC file
with a single record batch, one row per document: `tokens: list<uint16|uint32>` (EOS appended) and
`doc_id: string`. One batch means the list's values buffer is one contiguous token stream and its offsets
are the document boundaries, so a memory-mapped shard is read as two numpy arrays without a copy.

Folders may be local paths or URLs (s3://...): every file is written whole or not at all through
`pipeline.storage.atomic_write`. Only `read_shard` needs a local file (it memory-maps it); the trainer
reads local copies of a remote folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import storage

FORMAT_NAME = "tokenmill-shards"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def shard_schema(dtype: np.dtype) -> pa.Schema:
    return pa.schema(
        [
            pa.field("tokens", pa.list_(pa.from_numpy_dtype(dtype)), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
        ]
    )


def sha256_file(url: str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, local or remote, read in chunks."""
    fs, path = storage.filesystem(url)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShardInfo:
    file: str  # relative to the shard folder
    num_docs: int
    num_tokens: int
    sha256: str
    bytes: int = 0  # the file's size (0: a manifest written before sizes were recorded)
    text_bytes: int = 0  # UTF-8 bytes of the documents' text: bits per byte = summed loss / ln 2 / this


def write_shard(
    url: str,
    tokens: Sequence[np.ndarray] | pa.ListArray | pa.LargeListArray,
    doc_ids: Sequence[str] | pa.Array,
    dtype: np.dtype | None = None,
) -> ShardInfo:
    """Write one shard atomically (a local path or a URL): `tokens` per document, each ending with EOS, as
    numpy arrays (of `dtype`) or as an Arrow list array.

    The file is built in memory first (as large as the tokens it holds), so its sha256 comes for free and
    an object store gets it in one upload.
    """
    if len(tokens) != len(doc_ids):
        raise ValueError(f"{len(tokens)} token lists but {len(doc_ids)} doc ids")
    if isinstance(tokens, pa.ListArray | pa.LargeListArray):
        values = tokens.flatten().to_numpy(zero_copy_only=False)
        offsets = tokens.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        dtype = np.dtype(dtype or values.dtype)
    else:
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        dtype = np.dtype(dtype)
        values = np.concatenate(tokens) if len(tokens) else np.zeros(0, dtype)
    if offsets[-1] >= 2**31:
        raise ValueError("a shard holds fewer than 2**31 tokens; write smaller shards")
    values = values.astype(dtype, copy=False)
    lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    batch = pa.record_batch([lists, pa.array(doc_ids, pa.string())], schema=shard_schema(dtype))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    data = sink.getvalue()
    with storage.atomic_write(url) as f:
        f.write(memoryview(data))
    sha256 = hashlib.sha256(memoryview(data)).hexdigest()
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return ShardInfo(name, len(doc_ids), int(offsets[-1]), sha256, len(data))


@dataclass
class Shard:
    """A memory-mapped shard: `tokens` is the whole token stream, `offsets[i]:offsets[i+1]` document i."""

    tokens: np.ndarray
    offsets: np.ndarray
    doc_ids: pa.StringArray


def read_shard(path: str) -> Shard:
    """Memory-map a local shard file: nothing is read until a window of it is."""
    return _shard_from(pa.memory_map(path, "r"), path)


def _shard_from(source: pa.NativeFile | pa.Buffer, name: str) -> Shard:
    reader = pa.ipc.open_file(source)
    if reader.num_record_batches != 1:
        raise ValueError(f"{name}: a shard has exactly one record batch, found {reader.num_record_batches}")
    batch = reader.get_batch(0)
    lists = batch.column("tokens")
    tokens = lists.values.to_numpy(zero_copy_only=True)
    offsets = lists.offsets.to_numpy(zero_copy_only=True)
    return Shard(tokens=tokens, offsets=offsets, doc_ids=batch.column("doc_id"))


@dataclass
class TokenizerInfo:
    file: str
    sha256: str
    vocab_size: int
    eos_id: int
    special_tokens: dict[str, int] = field(default_factory=dict)  # name -> id (EOS, pad, chat roles)


@dataclass
class Manifest:
    tokenizer: TokenizerInfo
    dtype: str
    splits: dict[str, list[ShardInfo]]
    config: dict[str, Any] = field(default_factory=dict)
    input: list[str] = field(default_factory=list)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def totals(self) -> dict[str, dict[str, int]]:
        out = {
            split: {
                "num_shards": len(shards),
                "num_docs": sum(s.num_docs for s in shards),
                "num_tokens": sum(s.num_tokens for s in shards),
                "text_bytes": sum(s.text_bytes for s in shards),
            }
            for split, shards in self.splits.items()
        }
        keys = ("num_shards", "num_docs", "num_tokens", "text_bytes")
        out["all"] = {k: sum(v[k] for v in out.values()) for k in keys}
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        return {
            k: data[k]
            for k in ("format", "version", "tokenizer", "dtype", "splits", "totals", "config", "input")
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"not a {FORMAT_NAME} manifest (format={data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"shard format version {data.get('version')} is not supported (want {FORMAT_VERSION})"
            )
        return cls(
            tokenizer=TokenizerInfo(**data["tokenizer"]),
            dtype=data["dtype"],
            splits={k: [ShardInfo(**s) for s in v] for k, v in data["splits"].items()},
            config=data.get("config", {}),
            input=data.get("input", []),
        )


def write_manifest(folder: str, manifest: Manifest) -> str:
    url = storage.join(folder, MANIFEST_FILE)
    storage.write_json(url, manifest.to_json())
    return url


def read_manifest(folder: str) -> Manifest:
    try:
        data = storage.read_json(storage.join(folder, MANIFEST_FILE))
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {folder}: is it a tokenmill shard folder?") from None
    return Manifest.from_json(data)


def verify_shards(folder: str, deep: bool = True) -> list[str]:
    """What is wrong with a shard folder against its manifest, one line per problem naming the file
    (empty: nothing).

    Always: the tokenizer's sha256, and every shard present, of the manifest's size, with its counts and
    dtype. `deep` (what `tokenmill verify` does) adds each shard's sha256, its document offsets, every token
    id below the vocabulary size and an EOS ending every document: it reads every byte. A local folder's
    shards are memory-mapped; a remote one's are read once each (deep) or only listed (quick).
    """
    manifest = read_manifest(folder)
    problems = []
    tok_url = storage.join(folder, manifest.tokenizer.file)
    if not storage.exists(tok_url) or sha256_file(tok_url) != manifest.tokenizer.sha256:
        problems.append(f"{manifest.tokenizer.file}: missing or sha256 differs from the manifest")
    local = storage.is_local(folder)
    for split, shards in manifest.splits.items():
        for info in shards:
            where = f"{split}/{info.file}"
            url = storage.join(folder, info.file)
            try:
                size = storage.info(url).size
            except FileNotFoundError:
                problems.append(f"{where}: missing")
                continue
            if info.bytes and size != info.bytes:
                problems.append(f"{where}: {size} bytes, the manifest says {info.bytes}")
                continue
            if not local and not deep:
                continue
            try:
                if local:
                    shard = read_shard(url)
                    sha256 = sha256_file(url) if deep else info.sha256
                else:
                    data = storage.read_bytes(url)
                    sha256, shard = hashlib.sha256(data).hexdigest(), _shard_from(pa.py_buffer(data), url)
            except (pa.ArrowInvalid, ValueError, OSError) as e:
                problems.append(f"{where}: not a readable shard ({e})")
                continue
            problems += [f"{where}: {p}" for p in _shard_problems(shard, info, manifest, sha256, deep)]
    return problems


def _shard_problems(shard: Shard, info: ShardInfo, manifest: Manifest, sha256: str, deep: bool) -> list[str]:
    out = []
    if sha256 != info.sha256:
        out.append("sha256 differs from the manifest (the file changed or is damaged)")
    if len(shard.doc_ids) != info.num_docs or len(shard.tokens) != info.num_tokens:
        out.append(
            f"counts differ from the manifest ({len(shard.doc_ids)} documents, {len(shard.tokens)} tokens; "
            f"manifest: {info.num_docs}, {info.num_tokens})"
        )
    if shard.tokens.dtype != np.dtype(manifest.dtype):
        out.append(f"dtype {shard.tokens.dtype}, manifest says {manifest.dtype}")
    if out or not deep or not len(shard.tokens):
        return out
    offsets = shard.offsets
    if offsets[0] != 0 or offsets[-1] != len(shard.tokens) or np.any(np.diff(offsets) <= 0):
        return [*out, "document offsets are not increasing from 0 to the token count"]
    if int(shard.tokens.max()) >= manifest.tokenizer.vocab_size:
        bad = int(np.argmax(shard.tokens >= manifest.tokenizer.vocab_size))
        out.append(
            f"token id {int(shard.tokens[bad])} at {bad} >= vocab_size {manifest.tokenizer.vocab_size}"
        )
    if np.any(shard.tokens[offsets[1:] - 1] != manifest.tokenizer.eos_id):
        out.append(f"a document does not end with EOS ({manifest.tokenizer.eos_id})")
    return out
