"""Walk a run folder (or stage folders) into the report: one JSON-serialisable dict, small at any scale.

What is exact and what is sampled:
- exact: documents in, kept and dropped per reason, errors and wall time per stage (each stage's
  stats/merged.json); tokens and documents per shard and split (manifest.json); bytes per token when the
  tokenize stage counted the bytes it encoded; the pretraining curve (metrics.jsonl, thinned to 500 points).
- sampled past `sample_docs` documents per stage (the report says so, with how many it read): languages,
  character lengths, top domains and drop examples (report.documents), tokens per document
  (report.tokens). Duplicate cluster sizes read one column of every dedup file and sample clusters by hash
  past 200,000 of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pipeline import storage
from pipeline.config import UsageError
from pipeline.stage_folder import MERGED
from report.documents import DocumentFiles, document_files, scan_clusters, scan_excluded, scan_kept
from report.tokens import bytes_per_token, sampled_bytes_per_token, shard_table, token_lengths
from tokenizer.shards import MANIFEST_FILE, Manifest, read_manifest

STAGE_ORDER = ["extract", "filter", "dedup", "train-tokenizer", "tokenize", "pretrain"]
DEFAULT_SAMPLE_DOCS = 200_000
CURVE_POINTS = 500


def _stage_row(summary: dict[str, Any]) -> dict[str, Any]:
    counters = summary.get("counters", {})
    return {
        "stage": summary["stage"],
        "output": summary.get("output"),
        "docs_in": counters.get("docs_in", 0),
        "docs_out": counters.get("docs_out", counters.get("docs_in", 0)),
        "dropped": summary.get("dropped", {}),
        "errors": summary.get("errors", []),
        "errors_total": summary.get("errors_total", len(summary.get("errors", []))),
        "complete": summary.get("complete", True),
        "tasks_failed": summary.get("tasks_failed", []),
        "wall_seconds": summary.get("wall_seconds"),
        "counters": counters,
    }


def _metrics(run_dir: str) -> list[dict[str, Any]]:
    try:
        text = storage.read_bytes(storage.join(run_dir, "metrics.jsonl")).decode("utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _pretrain_row(run_dir: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    return {
        "stage": "pretrain",
        "output": run_dir,
        "steps": rows[-1]["step"],
        "final_loss": rows[-1]["loss"],
        "final_val_loss": val[-1] if val else None,
        "tokens_per_s": rows[-1].get("tokens_per_s"),
        "wall_seconds": rows[-1].get("elapsed_s"),
    }


def _thin(points: list[list[float]], n: int = CURVE_POINTS) -> list[list[float]]:
    """At most about n points, evenly spaced, the last always kept (where the run ended)."""
    if len(points) <= n:
        return points
    step = len(points) / n
    return [points[int(i * step)] for i in range(n)] + [points[-1]]


def _curve(rows: list[dict[str, Any]]) -> dict[str, Any]:
    train = [[r["step"], r["loss"]] for r in rows if r.get("loss") is not None]
    val = [[r["step"], r["val_loss"]] for r in rows if r.get("val_loss") is not None]
    return {"train": _thin(train), "val": _thin(val), "points": len(rows)}


def _is_work_folder(url: str) -> bool:
    return url.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))


class _Run:
    """What the given folders hold: stage summaries and where each stage's folder is."""

    def __init__(self, dirs: Sequence[str]) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, str] = {}  # stage -> the folder found here (a moved run's `output` is stale)
        self.shards: tuple[str, Manifest] | None = None
        self.metrics: tuple[str, list[dict[str, Any]]] | None = None
        for given in dirs:
            d = storage.normalize(given)
            if not storage.exists(d):
                raise UsageError(f"no such folder: {given}")
            for c in [d, *(s for s in storage.subfolders(d) if not _is_work_folder(s))]:
                self._look_in(c)
        if not self.stages:
            raise UsageError(
                f"no stage outputs (stats/merged.json, manifest.json, metrics.jsonl) in {', '.join(dirs)}"
            )

    def _look_in(self, c: str) -> None:
        if storage.exists(storage.join(c, MERGED)):
            summary = storage.read_json(storage.join(c, MERGED))
            self.stages[summary["stage"]] = _stage_row(summary)
            self.folders[summary["stage"]] = c
        for path in storage.glob(storage.join(c, "*.stats.json")):
            summary = storage.read_json(path)
            self.stages[summary["stage"]] = _stage_row(summary)
        if storage.exists(storage.join(c, MANIFEST_FILE)):
            self.shards = (c, read_manifest(c))
        if rows := _metrics(c):
            self.stages["pretrain"] = _pretrain_row(c, rows)
            self.metrics = (c, rows)

    def ordered(self) -> list[dict[str, Any]]:
        rows = [self.stages[s] for s in STAGE_ORDER if s in self.stages]
        return rows + [v for k, v in self.stages.items() if k not in STAGE_ORDER]

    def document_stages(self) -> list[tuple[str, str, DocumentFiles]]:
        out = []
        for row in self.ordered():
            folder = self.folders.get(row["stage"])
            if folder is not None and (files := document_files(folder)) is not None:
                out.append((row["stage"], folder, files))
        return out


def _shards_summary(folder: str, manifest: Manifest) -> dict[str, Any]:
    return {"folder": folder, "dtype": manifest.dtype, "vocab_size": manifest.tokenizer.vocab_size}


def _tokenize_input(run: _Run, manifest: Manifest) -> list[str]:
    """The part files the shards were tokenized from: the manifest's input, or the document stage of this
    run with the same folder name (a moved or copied run's manifest names where it was)."""
    for given in manifest.input[:1]:
        if storage.exists(storage.join(given, MERGED)) and (files := document_files(given)):
            return files.kept
        name = given.rstrip("/").rsplit("/", 1)[-1]
        for _, folder, files in run.document_stages():
            if folder.rstrip("/").rsplit("/", 1)[-1] == name:
                return files.kept
    return []


def _tokens(run: _Run, budget: int | None) -> dict[str, Any] | None:
    if run.shards is None:
        return None
    folder, manifest = run.shards
    totals = manifest.totals()
    counters = run.stages.get("tokenize", {}).get("counters", {})
    bpt = bytes_per_token(counters, totals["all"]["num_docs"])
    if bpt is None and (parts := _tokenize_input(run, manifest)):
        bpt = sampled_bytes_per_token(folder, parts, min(budget or 20_000, 20_000))
    return {
        "folder": folder,
        "totals": totals,
        "per_shard": shard_table(manifest),
        "lengths": token_lengths(folder, manifest, budget),
        "bytes_per_token": bpt,
    }


def _tokenmill_version() -> str:
    try:
        return version("tokenmill")
    except PackageNotFoundError:
        return "unknown"


def collect(dirs: Sequence[str], sample_docs: int | None = DEFAULT_SAMPLE_DOCS) -> dict[str, Any]:
    """The report of a run folder (or of stage folders): see the module docstring for what is sampled.

    `sample_docs` bounds the documents read per stage folder (kept and dropped each); 0 or None reads all.
    A missing folder, or one holding no stage output, is a UsageError.
    """
    run = _Run(dirs)
    budget = sample_docs or None
    shards = None
    if run.shards is not None:
        folder, manifest = run.shards
        shards = {**_shards_summary(folder, manifest), **manifest.totals()}
    documents: dict[str, Any] = {}
    dedup = None
    for stage, folder, files in run.document_stages():
        row = run.stages[stage]
        documents[stage] = {
            "folder": folder,
            "kept": scan_kept(files.kept, budget, row["docs_out"]),
            "dropped": scan_excluded(files.excluded, budget, sum(row["dropped"].values())),
        }
        if stage == "dedup":
            dedup = scan_clusters(files)
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "tokenmill_version": _tokenmill_version(),
        "folders": [storage.normalize(d) for d in dirs],
        "sample_docs": budget,
        "stages": run.ordered(),
        "shards": shards,
        "documents": documents,
        "dedup": dedup,
        "tokens": _tokens(run, budget),
        "pretrain": _curve(run.metrics[1]) if run.metrics else None,
    }
