"""Train the BPE tokenizer on a uniform random sample of a document folder, resumable by fingerprint.

The sample is drawn on Ray, one task per part file read: every document has the same chance,
`sample_bytes / corpus bytes` (the corpus size read from the Parquet footers), whichever file it is in, the
same documents are picked on every run (seeded hashes of file names and ids), and the text the trainer sees
is about `sample_bytes` at any corpus size. Parts are drawn first (plan_sample), so a 9 TB corpus costs
reading about 16 times the budget, not 9 TB. The trainer consumes the sample as a
stream (parts in order, a few in flight): its memory grows with the distinct words it counts, not with bytes.

The output is one file (`tokenizer.json`); beside it `tokenizer.stats.json` records what produced it
(config, upstream fingerprint, the tokenizer's sha256) and is written last: a rerun skips training only
when that record matches the current recipe and the file on disk.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from pipeline import storage
from pipeline.config import UsageError
from pipeline.dedup import hash_strings
from pipeline.documents import text_bytes
from pipeline.ray_cluster import check_paths_reachable, cluster_cpus, init_ray
from pipeline.stage import describe_changes, digest, recipe, refuse_config_change
from pipeline.stage_folder import read_stage
from tokenizer.bpe import MIN_VOCAB, eos_id, special_token_ids, train_bpe

VERSION = f"2 tokenizers={version('tokenizers')}"
SAMPLE_SALT, PART_SALT = 0x5A4D, 0x9A27  # keep the sample independent of other seeded hashes
PART_OVERSAMPLE, MIN_PARTS = 16, 64  # parts read: 16 times the budget's share, and 64 parts' worth at least
FOOTERS_PER_TASK = 256


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 32768
    min_frequency: int = 2
    sample_bytes: int = 2_000_000_000  # train on a uniform random sample of about this much text (UTF-8)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < MIN_VOCAB:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB}, got {self.vocab_size}")
        if self.sample_bytes < 1:
            raise ValueError(f"sample_bytes must be >= 1, got {self.sample_bytes}")


def stats_path(tokenizer_url: str) -> str:
    return tokenizer_url.removesuffix(".json") + ".stats.json"


def _footer_text_bytes(urls: list[str]) -> list[int]:
    """The text of each part file, in bytes, from the Parquet footers alone."""
    sizes = []
    for url in urls:
        fs, path = storage.filesystem(url)
        with fs.open(path, "rb") as f:
            sizes.append(text_bytes(pq.read_metadata(f)))
    return sizes


def _sample(url: str, threshold: int | None, seed: int) -> pa.Array:
    """The texts of one part whose id hashes below `threshold` (None: all of them)."""
    fs, path = storage.filesystem(url)
    chosen = []
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=4096, columns=["id", "text"]):
            texts = batch.column("text")
            if threshold is not None:
                keep = hash_strings(batch.column("id"), seed ^ SAMPLE_SALT) < np.uint64(threshold)
                texts = texts.filter(pa.array(keep))
            chosen.append(texts)
    return pa.concat_arrays(chosen) if chosen else pa.array([], pa.string())


def _sampled_texts(
    parts: list[str], threshold: int | None, seed: int, counts: dict[str, int]
) -> Iterator[str]:
    """Stream the sample, parts in input order (the trainer's result may depend on order), a few in flight."""
    remote = ray.remote(num_cpus=1)(_sample)
    queue, in_flight = deque(parts), deque()
    limit = max(2, 2 * cluster_cpus())
    every = 0.1 if sys.stderr.isatty() else 30
    with tqdm(
        total=len(parts), desc="train-tokenizer: sample", unit="part", file=sys.stderr, mininterval=every
    ) as bar:
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                in_flight.append(remote.remote(queue.popleft(), threshold, seed))
            texts = ray.get(in_flight.popleft())
            bar.update(1)
            counts["docs"] += len(texts)
            counts["bytes"] += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
            yield from texts.to_pylist()


@dataclass(frozen=True)
class SamplePlan:
    parts: list[str]  # the part files read
    threshold: int | None  # their documents whose id hashes below this are kept (None: all)
    fraction: float  # every document's chance to be in the sample


def plan_sample(parts: list[str], corpus_bytes: int, sample_bytes: int, seed: int) -> SamplePlan:
    """Two uniform stages: a part is read with chance q and each of its documents kept with p / q, so every
    document's chance is p = sample_bytes / corpus_bytes, and only about q / p times the budget is read
    (q = 16 p, or 64 parts' worth), not the corpus. A crawl's WARC files each hold a random slice of it, so
    drawing files first costs the sample little of its spread."""
    p = min(1.0, sample_bytes / corpus_bytes) if corpus_bytes else 1.0
    q = min(1.0, max(PART_OVERSAMPLE * p, MIN_PARTS / max(len(parts), 1)))
    if q < 1.0:  # parts drawn by a hash of their file name: the same parts wherever the folder lies
        names = [url.rstrip("/").rsplit("/", 1)[-1] for url in parts]
        keep = hash_strings(names, seed ^ PART_SALT) < np.uint64(int(q * 2**64))
        parts = [url for url, k in zip(parts, keep, strict=True) if k]
    return SamplePlan(parts, None if p / q >= 1.0 else int(p / q * 2**64), p)


def _train(parts: list[str], output: str, cfg: TokenizerConfig) -> dict[str, Any]:
    start = time.perf_counter()
    chunks = [parts[i : i + FOOTERS_PER_TASK] for i in range(0, len(parts), FOOTERS_PER_TASK)]
    corpus_bytes = sum(sum(s) for s in ray.get([ray.remote(_footer_text_bytes).remote(c) for c in chunks]))
    plan = plan_sample(parts, corpus_bytes, cfg.sample_bytes, cfg.seed)
    counts = {"docs": 0, "bytes": 0}
    tokenizer = train_bpe(
        _sampled_texts(plan.parts, plan.threshold, cfg.seed, counts), cfg.vocab_size, cfg.min_frequency
    )
    data = tokenizer.to_str().encode("utf-8")
    storage.write_bytes(output, data)
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": eos_id(tokenizer),
        "special_tokens": special_token_ids(tokenizer),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sample": {
            "fraction": round(plan.fraction, 6),
            "corpus_text_bytes_estimate": corpus_bytes,
            "parts_read": len(plan.parts),
            "parts": len(parts),
        },
        "counters": {"docs_in": counts["docs"], "bytes_in": counts["bytes"]},
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def train_tokenizer(
    input_dir: str, output: str, cfg: TokenizerConfig, overwrite: bool = False
) -> dict[str, Any]:
    """Train unless `output` already holds this recipe's tokenizer; return the summary (`skipped` if so)."""
    docs = read_stage(input_dir)
    wanted = recipe("train-tokenizer", VERSION, cfg, {"upstream": docs.fingerprint})
    fingerprint = digest(wanted)
    try:
        old = storage.read_json(stats_path(output))
    except FileNotFoundError:
        old = None
    if old is not None and old.get("fingerprint") == fingerprint:
        try:
            if hashlib.sha256(storage.read_bytes(output)).hexdigest() == old.get("sha256"):
                return {**old, "skipped": True}
        except FileNotFoundError:
            pass
    elif old is not None:
        refuse_config_change(f"{output} was", describe_changes(old, wanted), overwrite)
    parts = [inp.url for inp in docs.document_inputs()]
    if not parts:
        raise UsageError(f"no documents in {input_dir}")
    init_ray()
    check_paths_reachable([output, docs.root])
    storage.remove([stats_path(output)])  # the record goes first: a crash mid-training leaves no false claim
    # The sample is drawn by Ray tasks; the trainer runs here, with the tokenizers library's own threads.
    summary = {**wanted, "output": output, "fingerprint": fingerprint, **_train(parts, output, cfg)}
    storage.write_json(stats_path(output), summary)
    return summary
