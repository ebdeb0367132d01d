"""Which data a run trains on, as its checkpoint records it: the shard folders, their weights and manifests.

`--resume` compares this record with the folders given now (reading only their manifests), so a run never
continues on other data by mistake; a folder that moved but holds the same manifest is the same data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from pipeline import storage
from pipeline.config import UsageError
from tokenizer.shards import MANIFEST_FILE
from train.loader import MixtureLoader, parse_data


def saved_sources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources a checkpoint recorded; a checkpoint from before mixtures had one folder, weight 1."""
    if "sources" in data:
        return data["sources"]
    return [{"dir": data["dir"], "weight": 1.0, "manifest_sha256": data.get("manifest_sha256")}]


def describe_mixture(sources: Sequence[dict[str, Any]]) -> str:
    return " + ".join(f"{s['dir']}:{s['weight']:.3g}" for s in sources)


def data_change(saved: dict[str, Any], now: Sequence[dict[str, Any]]) -> str | None:
    """Why a checkpoint's data (its `data` record) is not the sources `now` ({dir, weight, manifest_sha256}
    each, in --data order), or None when resuming would continue on the same data. A folder may have
    moved (the manifest says which data it is); the order, weights and manifests must match."""
    before = saved_sources(saved)
    same_weights = len(before) == len(now) and all(
        math.isclose(a["weight"], b["weight"], rel_tol=1e-9) for a, b in zip(before, now, strict=True)
    )
    if not same_weights:
        was, now_mix = describe_mixture(before), describe_mixture(now)
        return f"the checkpoint was trained on the mixture {was}, not {now_mix}"
    for a, b in zip(before, now, strict=True):
        if a.get("manifest_sha256") not in (None, b["manifest_sha256"]):
            return (
                f"the shard folder {b['dir']} is not the one the checkpoint was trained on "
                f"({a['dir']}, another manifest.json)"
            )
    return None


def data_identity(local_dirs: Sequence[str], loader: MixtureLoader) -> dict[str, Any]:
    """What the checkpoint records of its data: each source's URL (not a cache), weight and version."""
    tok = loader.manifest.tokenizer
    sources = [
        dict(
            dir=storage.normalize(s.url),
            name=s.name,
            weight=s.weight,
            manifest_sha256=manifest_sha256(d),
            train_tokens=ld.train.num_tokens,
        )
        for s, d, ld in zip(loader.sources, local_dirs, loader.loaders, strict=True)
    ]
    data = {
        "tokenizer_sha256": tok.sha256,
        "eos_id": tok.eos_id,
        "vocab_size": tok.vocab_size,
        "train_tokens": loader.train_tokens,
        "sources": sources,
    }
    if len(sources) == 1:  # the keys a single-folder checkpoint has always had, for whoever reads them
        data.update(dir=sources[0]["dir"], manifest_sha256=sources[0]["manifest_sha256"])
    return data


def data_sources(specs: str | Sequence[str]) -> list[dict[str, Any]]:
    """{dir, weight, manifest_sha256} of each `DIR[:WEIGHT]`, reading only the manifests (remote ones
    too): what `data_change` compares a checkpoint's data with, without copying any shard."""
    out = []
    for source in parse_data(specs):
        try:
            sha256 = manifest_sha256(source.url)
        except FileNotFoundError:
            raise UsageError(f"no {MANIFEST_FILE} in {source.url}: is it a tokenmill shard folder?") from None
        out.append({"dir": storage.normalize(source.url), "weight": source.weight, "manifest_sha256": sha256})
    return out


def manifest_sha256(folder: str) -> str:
    return hashlib.sha256(storage.read_bytes(storage.join(folder, MANIFEST_FILE))).hexdigest()
