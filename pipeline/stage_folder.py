"""What a stage folder holds besides its outputs, and how the next stage reads a finished one.

completions/KEY.FINGERPRINT.json  a task's commit record: input, outputs with sizes, result, stats
stats/merged.json               the stage: complete or not, fingerprint, config, counters, capped errors
stats/tasks.parquet             one row per committed task of the last run: the index the next stage
                                reads with one request, and the driver's cache of commit records
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import UsageError


@dataclass(frozen=True)
class TaskInput:
    key: str  # names the task's outputs
    url: str  # what the task reads
    identity: dict[str, Any]  # changes whenever what the task reads does


COMPLETIONS = "completions"
MERGED = "stats/merged.json"
INDEX = "stats/tasks.parquet"


def index_row(record: dict[str, Any]) -> dict[str, Any]:
    stats = dict(record["stats"])
    stats["errors"] = stats.get("errors", [])[:5]  # the record keeps its task's; the index stays small
    return {
        "key": record["key"],
        "fingerprint": record["fingerprint"],
        "url": record.get("url", ""),
        "input": json.dumps(record["input"], sort_keys=True),
        "outputs": json.dumps(record["outputs"], sort_keys=True),
        "result": json.dumps(record.get("result", {}), sort_keys=True),
        "stats": json.dumps(stats, sort_keys=True),
    }


INDEX_COLUMNS = ("key", "fingerprint", "url", "input", "outputs", "result", "stats")
INDEX_SCHEMA = pa.schema([(name, pa.string()) for name in INDEX_COLUMNS])


def write_index(root: str, rows: dict[str, dict[str, Any]]) -> None:
    table = pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=INDEX_SCHEMA)
    with storage.atomic_write(storage.join(root, INDEX)) as f:
        pq.write_table(table, f, compression="zstd")


def read_index(root: str) -> dict[tuple[str, str], dict[str, Any]]:
    try:
        rows = pq.read_table(pa.BufferReader(storage.read_bytes(storage.join(root, INDEX)))).to_pylist()
    except FileNotFoundError:
        return {}
    return {(r["key"], r["fingerprint"]): r for r in rows}


@dataclass(frozen=True)
class StageIndex:
    """A finished stage folder as the next stage sees it."""

    stage: str
    root: str
    fingerprint: str
    rows: list[dict[str, Any]]

    def document_inputs(self) -> list[TaskInput]:
        """One input per part file, keyed like the task that wrote it, identified by that task's commit."""
        inputs = []
        for row in self.rows:
            name = f"part-{row['key']}.parquet"
            size = json.loads(row["outputs"]).get(name)
            if size is None:
                continue
            inputs.append(
                TaskInput(
                    row["key"], storage.join(self.root, name), {"size": size, "upstream": row["fingerprint"]}
                )
            )
        return inputs


def read_stage(folder: str, expect: str | None = None) -> StageIndex:
    """The index of a finished stage folder; a UsageError if it is missing, unfinished or another stage's."""
    root = storage.normalize(folder)
    try:
        merged = storage.read_json(storage.join(root, MERGED))
    except (FileNotFoundError, NotADirectoryError):
        if not storage.exists(root):
            raise UsageError(f"no such document folder: {folder}") from None
        raise UsageError(f"{folder} is not a tokenmill stage output (no {MERGED})") from None
    if expect is not None and merged.get("stage") != expect:
        raise UsageError(f"{folder} holds the output of stage {merged.get('stage')!r}, expected {expect!r}")
    if not merged.get("complete"):
        why = (
            f"{merged.get('tasks_failed_total')} task(s) failed"
            if (merged.get("tasks_failed_total") or 0) > 0
            else "its last run did not finish"
        )
        raise UsageError(f"{folder} is incomplete ({why}): rerun stage {merged.get('stage')} first")
    rows = list(read_index(root).values())
    return StageIndex(merged["stage"], root, merged["fingerprint"], sorted(rows, key=lambda r: r["key"]))
