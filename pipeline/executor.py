"""Run a data stage as Ray tasks, one per input file, resumable through completion markers.

A stage output folder looks the same for every stage:
  part-00000.parquet ...       the documents kept (or whatever the stage writes)
  excluded/part-00000.parquet  the documents dropped, each with its reason
  stats/part-00000.json        each task's counters; stats/merged.json the stage's
  completions/part-00000       written last by a task: a rerun skips the tasks that have one

Ray does the scheduling; this module only decides which tasks still need to run and merges what they say.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import ray
from tqdm import tqdm

from pipeline.stats import Stats


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (as `ray job submit` sets it) or start a local Ray."""
    if ray.is_initialized():
        return
    if address := os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address=address, logging_level="WARNING")
        except ConnectionError as e:
            raise ConnectionError(
                f"cannot connect to the Ray cluster at RAY_ADDRESS={address} ({e}); a cluster started with "
                "`ray start` uses token authentication: set RAY_AUTH_MODE=token on this side too"
            ) from None
    else:
        # Explicitly local (not Ray's auto-detect): without RAY_ADDRESS a command never joins a cluster it was
        # not pointed at. The dashboard is not needed to run tasks.
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")


@dataclass(frozen=True)
class StageLayout:
    root: str

    def part(self, i: int) -> str:
        return f"{self.root}/part-{i:05d}.parquet"

    def excluded(self, i: int) -> str:
        return f"{self.root}/excluded/part-{i:05d}.parquet"

    def task_stats(self, i: int) -> str:
        return f"{self.root}/stats/part-{i:05d}.json"

    def completion(self, i: int) -> str:
        return f"{self.root}/completions/part-{i:05d}"

    @property
    def merged_stats(self) -> str:
        return f"{self.root}/stats/merged.json"


def write_json(path: str, data: Any) -> None:
    fs, fs_path = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(fs_path), exist_ok=True)
    with fs.open(fs_path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    fs.mv(fs_path + ".tmp", fs_path)


def read_json(path: str) -> Any:
    with fsspec.open(path, "r") as f:
        return json.load(f)


def exists(path: str) -> bool:
    fs, fs_path = fsspec.core.url_to_fs(path)
    return fs.exists(fs_path)


# A task takes (task index, input, layout, config) and returns its Stats; the executor writes the stats
# and the completion marker after it returns, so a task that dies leaves no marker and reruns.
Task = Callable[[int, str, StageLayout, dict[str, Any]], Stats]


def _run_one(task: Task, i: int, source: str, layout: StageLayout, config: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    stats = task(i, source, layout, config)
    stats.add("task_seconds", round(time.perf_counter() - start, 3))
    write_json(layout.task_stats(i), stats.to_json())
    write_json(layout.completion(i), {"input": source})
    return stats.to_json()


@dataclass
class StageResult:
    stage: str
    output: str
    stats: Stats
    tasks: int
    skipped: int  # tasks already complete from an earlier run
    failed: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0


def run_stage(
    stage: str,
    task: Task,
    inputs: list[str],
    output: str,
    config: dict[str, Any],
    *,
    num_cpus: float = 1,
    started: float | None = None,
) -> StageResult:
    """Run `task` once per input on Ray, skipping completed ones; merge and write the stage's stats.

    `started` (a time.perf_counter() value) lets a stage made of several steps report its whole wall time.
    """
    start = time.perf_counter() if started is None else started
    layout = StageLayout(output.rstrip("/"))
    pending, skipped = [], 0
    for i, source in enumerate(inputs):
        marker = layout.completion(i)
        if exists(marker):
            done_for = read_json(marker).get("input")
            if done_for != source:
                raise RuntimeError(
                    f"{output} holds the output of other inputs (task {i} was {done_for}, now {source}): "
                    "use a new output folder or delete this one"
                )
            skipped += 1
        else:
            pending.append(i)

    failed: list[str] = []
    if pending:
        init_ray()
        remote = ray.remote(num_cpus=num_cpus, max_retries=1)(_run_one)
        refs = {remote.remote(task, i, inputs[i], layout, config): i for i in pending}
        with tqdm(total=len(inputs), initial=skipped, desc=stage, unit="file", file=sys.stderr) as bar:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                i = refs.pop(done[0])
                try:
                    ray.get(done[0])
                except Exception as e:  # a bug or an unreadable input: report it, keep the other tasks going
                    failed.append(
                        f"{inputs[i]}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    )
                bar.update(1)

    stats = Stats()
    for i in range(len(inputs)):
        if exists(layout.task_stats(i)):
            stats.merge(Stats.from_json(read_json(layout.task_stats(i))))
    result = StageResult(stage, output, stats, len(inputs), skipped, failed, time.perf_counter() - start)
    write_json(
        layout.merged_stats,
        {
            "stage": stage,
            "output": output,
            "inputs": inputs,
            "config": config,
            "tasks": len(inputs),
            "tasks_skipped_as_complete": skipped,
            "tasks_failed": failed,
            "wall_seconds": round(result.wall_seconds, 3),
            **stats.to_json(),
        },
    )
    return result
