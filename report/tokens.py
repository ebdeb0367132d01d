"""What a shard folder holds: tokens per shard and split (exact, from manifest.json), tokens per document
(from the shards' list offsets), and bytes of text per token.

Tokens per document are read from whole shards in manifest order until `budget` documents: documents are
shuffled over all shards (tokenize's seeded global order), so the first shards are a uniform sample. A local
shard is memory-mapped and only its offsets are touched; a remote one is read whole.

Bytes per token is exact when the tokenize stage counted the UTF-8 bytes it encoded (`text_bytes` in its
stats/merged.json); otherwise it is measured on a sample of the input documents, encoded with the shard
folder's own tokenizer.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from report.documents import spread_order
from report.sketch import LogHistogram
from tokenizer.shards import SPLITS, TOKENIZER_FILE, Manifest

MAX_SHARDS_LISTED = 1000  # per split, in report.json; the totals always cover every shard
BYTES_SAMPLE_DOCS = 20_000


def shard_table(manifest: Manifest) -> dict[str, Any]:
    """Tokens and documents per shard, per split (exact)."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        shards = manifest.splits.get(split, [])
        out[split] = [[s.file, s.num_docs, s.num_tokens] for s in shards[:MAX_SHARDS_LISTED]]
        if len(shards) > MAX_SHARDS_LISTED:
            out[f"{split}_listed"] = f"first {MAX_SHARDS_LISTED} of {len(shards)}"
    return out


def _offsets(url: str) -> np.ndarray:
    if storage.is_local(url):
        source: pa.NativeFile | pa.Buffer = pa.memory_map(url, "r")  # nothing is read but the offsets
    else:
        source = pa.py_buffer(storage.read_bytes(url))
    reader = pa.ipc.open_file(source)
    lists = reader.get_batch(0).column("tokens")
    return lists.offsets.to_numpy(zero_copy_only=True)


def token_lengths(folder: str, manifest: Manifest, budget: int | None) -> dict[str, Any]:
    """Histogram of tokens per document (EOS included, as stored), over whole shards until `budget` docs."""
    hist = LogHistogram(decades=6)
    shards = [s for split in SPLITS for s in manifest.splits.get(split, [])]
    read = opened = 0
    for shard in shards:
        if budget is not None and read >= budget:
            break
        hist.add(np.diff(_offsets(storage.join(folder, shard.file))))
        read += shard.num_docs
        opened += 1
    out = hist.to_json()
    total = sum(s.num_docs for s in shards)
    out["sample"] = {
        "docs_read": hist.count,
        "docs_total": total,
        "shards_read": opened,
        "shards_total": len(shards),
        "sampled": hist.count < total,
    }
    return out


def bytes_per_token(counters: dict[str, Any], docs: int) -> dict[str, Any] | None:
    """Exact, from the tokenize stage's counters, when it counted `text_bytes`; EOS tokens not counted."""
    text_bytes = counters.get("text_bytes")
    tokens = counters.get("train_tokens", 0) + counters.get("val_tokens", 0)
    if not text_bytes or tokens <= docs:
        return None
    return {
        "bytes_per_token": text_bytes / (tokens - docs),
        "text_bytes": text_bytes,
        "text_tokens": tokens - docs,
        "method": "exact, from the tokenize stage's counters",
        "sampled": False,
    }


def sampled_bytes_per_token(
    folder: str, parts: list[str], budget: int = BYTES_SAMPLE_DOCS
) -> dict[str, Any] | None:
    """Bytes per token measured on up to `budget` input documents, encoded with the folder's tokenizer."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_str(storage.read_bytes(storage.join(folder, TOKENIZER_FILE)).decode())
    except FileNotFoundError:
        return None
    tokenizer.encode_special_tokens = True  # as tokenize encodes: a special token's text is plain text
    text_bytes = tokens = docs = 0
    for i in spread_order(len(parts)):
        fs, path = storage.filesystem(parts[i])
        with fs.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=512, columns=["text"]):
                texts = [t or "" for t in batch.column("text").to_pylist()][: budget - docs]
                text_bytes += sum(len(t.encode("utf-8")) for t in texts)
                tokens += sum(
                    len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)
                )
                docs += len(texts)
                if docs >= budget:
                    break
        if docs >= budget:
            break
    if not tokens:
        return None
    return {
        "bytes_per_token": text_bytes / tokens,
        "text_bytes": text_bytes,
        "text_tokens": tokens,
        "method": f"sampled: {docs:,} input documents encoded with the shard folder's tokenizer.json",
        "sampled": True,
    }
