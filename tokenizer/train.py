"""Train the BPE tokenizer on a finished document folder, in one Ray task, resumable by fingerprint.

The output is one file (`tokenizer.json`); beside it `tokenizer.stats.json` records what produced it
(config, upstream fingerprint, the tokenizer's sha256) and is written last: a rerun skips training only
when that record matches the current recipe and the file on disk.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import ray

from pipeline import storage
from pipeline.config import UsageError
from pipeline.documents import read_documents
from pipeline.ray_cluster import check_paths_reachable, init_ray
from pipeline.stage import describe_changes, digest, recipe, refuse_config_change
from pipeline.stage_folder import read_stage
from tokenizer.bpe import eos_id, train_bpe

VERSION = f"1 tokenizers={version('tokenizers')}"


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8192
    min_frequency: int = 2
    max_docs: int = 0  # train on at most this many documents (0: all); enough text matters, not all of it

    def __post_init__(self) -> None:
        if self.vocab_size < 257:
            raise ValueError(f"vocab_size must be at least 257 (256 bytes + EOS), got {self.vocab_size}")


def stats_path(tokenizer_url: str) -> str:
    return tokenizer_url.removesuffix(".json") + ".stats.json"


def _train(parts: list[str], output: str, cfg: TokenizerConfig) -> dict[str, Any]:
    start = time.perf_counter()
    counts = {"docs": 0, "chars": 0}

    def texts() -> Iterator[str]:
        for part in parts:
            for doc in read_documents(part, columns=["id", "text"]):
                if cfg.max_docs and counts["docs"] >= cfg.max_docs:
                    return
                counts["docs"] += 1
                counts["chars"] += len(doc.text)
                yield doc.text

    tokenizer = train_bpe(texts(), cfg.vocab_size, cfg.min_frequency)
    data = tokenizer.to_str().encode("utf-8")
    storage.write_bytes(output, data)
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": eos_id(tokenizer),
        "sha256": hashlib.sha256(data).hexdigest(),
        "counters": {"docs_in": counts["docs"], "chars_in": counts["chars"]},
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def train_tokenizer(
    input_dir: str, output: str, cfg: TokenizerConfig, overwrite: bool = False
) -> dict[str, Any]:
    """Train unless `output` already holds this recipe's tokenizer; return the summary (`skipped` if so)."""
    docs = read_stage(input_dir)
    # one task, not a fan-out: the recipe of a stage all the same, kept in the stats file beside the output
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
    # Training is one process: the tokenizers library parallelises it with its own threads.
    summary = ray.get(ray.remote(num_cpus=1)(_train).remote(parts, output, cfg))
    summary = {**wanted, "output": output, "fingerprint": fingerprint, **summary}
    storage.write_json(stats_path(output), summary)
    return summary
