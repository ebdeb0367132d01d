"""A data stage: one Ray task per input, each committed with a fingerprint, resumable at any scale.

An output folder looks the same for every stage:
  part-KEY.parquet ...            what the tasks wrote (the stage's `outputs` globs say which files)
  completions/KEY.FINGERPRINT.json  written last by a task: its commit record (input, outputs, stats)
  stats/merged.json               the stage: complete or not, fingerprint, config, counters, capped errors
  stats/tasks.parquet             one row per task of the last run: the index the next stage reads

A task is named by a stable KEY derived from its input, never by its position in a list, so adding or
removing an input touches only its own task. Its FINGERPRINT hashes the stage's semantics version, its
config and its input's identity (path, size, ETag/mtime, or the upstream task's fingerprint). A rerun
skips a task only when a commit record with the same fingerprint exists. A task whose input changed is
redone; a changed config or version, or tasks whose inputs are gone, stop the stage with one line saying
what changed unless `overwrite` is given. Files of tasks that no longer hold are removed, so the folder
always describes exactly the current inputs and config.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from tqdm import tqdm

from pipeline import storage
from pipeline.config import UsageError, to_table
from pipeline.documents import DocumentSink
from pipeline.ray_cluster import check_paths_reachable, cluster_cpus, forwarded_env, init_ray
from pipeline.stage_folder import COMPLETIONS, MERGED, TaskInput, index_row, read_index, write_index
from pipeline.stats import MAX_ERRORS, Stats

INDEX_FLUSH_SECONDS = 300  # a long run rewrites its index this often, so a killed driver loses little
_KEY_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def input_key(url: str) -> str:
    """A task key for a raw input file: its name (readable) and a hash of its full URL (unique)."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".warc", ".arc", ".wet", ".parquet"):
        name = name.removesuffix(suffix)
    digest = hashlib.sha1(storage.normalize(url).encode()).hexdigest()[:8]
    return f"{_KEY_RE.sub('_', name)[:80]}-{digest}"


def with_upstream(inputs: list[TaskInput], **extra: str) -> list[TaskInput]:
    """Inputs whose identity also covers a corpus-wide result (clusters, a tokenizer) they depend on."""
    return [TaskInput(i.key, i.url, {**i.identity, **extra}) for i in inputs]


@dataclass(frozen=True)
class Stage:
    name: str
    version: str  # bump when the meaning of the output changes; library versions that shape it belong here
    task: Callable[[TaskRun], None]
    config: Any  # a config dataclass: hashed into every fingerprint
    outputs: tuple[str, ...] = ("part-*.parquet", "excluded/part-*.parquet")  # globs of task files
    num_cpus: float = 1
    context: Any = None  # what tasks need but is not part of the recipe (e.g. where a side file lies)

    def fingerprint(self, inp: TaskInput) -> str:
        return digest(self.recipe(inp))

    def recipe(self, inp: TaskInput) -> dict[str, Any]:
        return recipe(self.name, self.version, self.config, inp.identity)


def recipe(stage: str, version: str, config: Any, identity: dict[str, Any]) -> dict[str, Any]:
    """What a fingerprint hashes, and what a commit record keeps so a change can be named."""
    return {"stage": stage, "version": version, "config": to_table(config), "input": identity}


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class TaskRun:
    """What a task function gets: its input, its config, where to write, and its counters."""

    key: str
    input: str
    root: str
    config: Any
    context: Any = None
    identity: dict[str, Any] = field(default_factory=dict)  # the input's identity (in the fingerprint)
    stats: Stats = field(default_factory=Stats)
    written: list[str] = field(default_factory=list)  # relative names of the files it wrote
    result: dict[str, Any] = field(default_factory=dict)  # JSON a later step needs (kept in the index)

    def output(self, name: str) -> str:
        """The URL of an output file (relative `name`); every file a task writes must come from here."""
        self.written.append(name)
        return storage.join(self.root, name)

    def documents(self) -> DocumentSink:
        """The sink of a document stage: kept to part-KEY.parquet, dropped to excluded/part-KEY.parquet."""
        return DocumentSink(
            self.output(f"part-{self.key}.parquet"),
            self.output(f"excluded/part-{self.key}.parquet"),
            self.stats,
        )


def _run_task(stage: Stage, inp: TaskInput, fingerprint: str, root: str) -> dict[str, Any]:
    """Ray task body: run, then commit with the completion record (written last, atomically)."""
    start = time.perf_counter()
    run = TaskRun(inp.key, inp.url, root, stage.config, stage.context, inp.identity)
    stage.task(run)
    seconds = round(time.perf_counter() - start, 3)
    outputs = {name: storage.info(storage.join(root, name)).size for name in dict.fromkeys(run.written)}
    run.stats.add("task_seconds", seconds)
    record = {
        "key": inp.key,
        "fingerprint": fingerprint,
        **stage.recipe(inp),
        "url": inp.url,
        "outputs": outputs,
        "result": run.result,
        "stats": run.stats.to_json(),
    }
    storage.write_json(storage.join(root, COMPLETIONS, f"{inp.key}.{fingerprint}.json"), record)
    return record


@dataclass
class StageResult:
    stage: str
    output: str
    stats: Stats
    tasks: int
    skipped: int  # complete from an earlier run with the same fingerprint
    failed: list[str] = field(default_factory=list)
    failed_total: int = 0
    redone: int = 0  # committed earlier from other input: done again
    removed: int = 0  # tasks of inputs no longer given, removed (with overwrite)
    wall_seconds: float = 0.0
    fingerprint: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> index row

    @property
    def complete(self) -> bool:
        return not self.failed_total


@dataclass
class _Plan:
    """What the listing of an output folder says a run must do."""

    done: dict[str, dict[str, Any]]  # key -> index row of a task to skip
    todo: list[TaskInput]
    redo: dict[str, str]  # key -> fingerprint of its old commit record (to delete)
    stale: dict[str, str]  # key -> fingerprint, of inputs no longer given
    garbage: list[str]  # relative names: temporary files, outputs no commit record claims
    merged: dict[str, Any] | None  # the folder's stats/merged.json as the last run left it


def _plan(
    stage: Stage, inputs: list[TaskInput], fingerprints: dict[str, str], root: str, overwrite: bool
) -> _Plan:
    listing = storage.list_tree(root)
    committed: dict[str, str] = {}
    garbage = [name for name in listing if storage.TMP_MARK in name]
    for name in listing:
        if name.startswith(COMPLETIONS + "/") and name.endswith(".json") and storage.TMP_MARK not in name:
            key, _, fp = name[len(COMPLETIONS) + 1 : -5].rpartition(".")
            if key in committed:  # two records for one key: only a crash between delete and write does that
                garbage.append(f"{COMPLETIONS}/{key}.{committed[key]}.json")
            committed[key] = fp
    merged = _check_owner(stage, root, listing, committed)

    expected = {inp.key: inp for inp in inputs}
    redo = {k: fp for k, fp in committed.items() if k in expected and fp != fingerprints[k]}
    stale = {k: fp for k, fp in committed.items() if k not in expected}
    if redo:
        _check_redo(stage, root, next(iter(redo.items())), len(redo), overwrite)
    if stale and not overwrite:
        example = sorted(stale)[0]
        raise UsageError(
            f"{root} holds {len(stale)} task(s) of inputs no longer given (e.g. {example}): rerun with "
            "--overwrite to remove them, or use another output folder"
        )

    cached = read_index(root)
    done_keys = [k for k, fp in committed.items() if k in expected and fp == fingerprints[k]]
    missing = [f"{COMPLETIONS}/{k}.{committed[k]}.json" for k in done_keys if (k, committed[k]) not in cached]
    read = storage.read_many([storage.join(root, m) for m in missing])
    done: dict[str, dict[str, Any]] = {}
    for k in done_keys:
        row = cached.get((k, committed[k]))
        if row is None:
            row = index_row(json.loads(read[storage.join(root, f"{COMPLETIONS}/{k}.{committed[k]}.json")]))
        done[k] = row
    claimed = {name for row in done.values() for name in json.loads(row["outputs"])}
    for name in listing:
        if name not in claimed and any(fnmatch.fnmatchcase(name, g) for g in stage.outputs):
            garbage.append(name)  # an uncommitted attempt, or a redone/stale task's old file
    todo = [inp for inp in inputs if inp.key not in done]
    return _Plan(done, todo, redo, stale, sorted(set(garbage)), merged)


def _check_owner(
    stage: Stage, root: str, listing: dict[str, storage.FileInfo], committed: dict[str, str]
) -> dict[str, Any] | None:
    """The folder's merged stats; a UsageError if the folder belongs to another stage or to someone else."""
    if MERGED in listing:
        merged = storage.read_json(storage.join(root, MERGED))
        if merged.get("stage") != stage.name:
            raise UsageError(
                f"{root} holds the output of stage {merged.get('stage')!r}, not {stage.name!r}: "
                "use another folder"
            )
        return merged
    if not committed and any(any(fnmatch.fnmatchcase(n, g) for g in stage.outputs) for n in listing):
        raise UsageError(
            f"{root} already holds files this stage would write, not from tokenmill: use another folder"
        )
    return None


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two recipes' version and config: 'name old -> new' each."""
    changes = []
    if old.get("version") != new["version"]:
        changes.append(f"version {old.get('version')} -> {new['version']}")
    return changes + _config_changes(old.get("config", {}), new["config"])


def _config_changes(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for name in sorted(set(now) | set(before)):
        a, b = before.get(name), now.get(name)
        if isinstance(a, dict) and isinstance(b, dict):  # a nested table: name the key that changed
            changes += _config_changes(a, b, f"{prefix}{name}.")
        elif a != b:
            changes.append(f"{prefix}{name} {a!r} -> {b!r}")
    return changes


def refuse_config_change(what: str, changes: list[str], overwrite: bool) -> None:
    """A changed input is redone quietly; a changed config or version needs the user's word."""
    if changes and not overwrite:
        raise UsageError(
            f"{what} made with another config ({'; '.join(changes[:5])}): rerun with --overwrite to redo, "
            "or use another output"
        )


def _check_redo(stage: Stage, root: str, example: tuple[str, str], n: int, overwrite: bool) -> None:
    key, old_fp = example
    old = storage.read_json(storage.join(root, COMPLETIONS, f"{key}.{old_fp}.json"))
    changes = describe_changes(old, stage.recipe(TaskInput(key, "", {})))
    refuse_config_change(f"{root}: {n} {stage.name} task(s) were", changes, overwrite)
    if not changes:
        print(f"{stage.name}: {n} task(s) whose input changed since they ran: redoing them", file=sys.stderr)


def _write_merged(stage: Stage, root: str, result: StageResult, inputs: int) -> None:
    storage.write_json(
        storage.join(root, MERGED),
        {
            "stage": stage.name,
            "output": root,
            "complete": result.complete,
            "fingerprint": result.fingerprint,
            "version": stage.version,
            "config": to_table(stage.config),
            "tasks": inputs,
            "tasks_skipped_as_complete": result.skipped,
            "tasks_redone": result.redone,
            "tasks_removed": result.removed,
            "tasks_failed": result.failed,
            "tasks_failed_total": result.failed_total,
            "wall_seconds": round(result.wall_seconds, 3),
            **result.stats.to_json(),
        },
    )


def run_stage(
    stage: Stage,
    inputs: list[TaskInput],
    output: str,
    *,
    overwrite: bool = False,
    started: float | None = None,
    max_in_flight: int | None = None,
    carried: Stats | None = None,
) -> StageResult:
    """Run `stage` over `inputs` into `output`; skip what is committed with the same fingerprint.

    `started` (a time.perf_counter() value) and `carried` (the counters of its earlier waves) let a stage
    made of several waves report its whole wall time and counts.
    """
    start = time.perf_counter() if started is None else started
    root = storage.normalize(output)
    keys = [inp.key for inp in inputs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"{stage.name}: two inputs map to the same task key {dup!r}; give each file once")
    fingerprints = {inp.key: stage.fingerprint(inp) for inp in inputs}
    plan = _plan(stage, inputs, fingerprints, root, overwrite)
    result = StageResult(stage.name, root, Stats(), len(inputs), len(plan.done), redone=len(plan.redo))
    result.records = dict(plan.done)
    result.removed = len(plan.stale)
    result.fingerprint = stage_fingerprint(fingerprints)
    changes = plan.todo or plan.redo or plan.stale or plan.garbage
    if plan.todo:  # before anything is written: a refused path must not get even a stats file
        init_ray()
        check_paths_reachable([root, *(inp.url for inp in plan.todo[:1])])
    if changes:
        # say first that the folder is in flux: a reader of an unfinished folder must not trust it
        _write_merged(stage, root, dataclasses.replace(result, failed_total=-1), len(inputs))
        # commit records go before the files they claim, so a crash here leaves nothing half-claimed
        old_records = [f"{COMPLETIONS}/{k}.{fp}.json" for k, fp in {**plan.redo, **plan.stale}.items()]
        storage.remove([storage.join(root, n) for n in old_records])
        storage.remove([storage.join(root, n) for n in plan.garbage if n not in old_records])
    if plan.todo:
        _run_pending(stage, plan.todo, fingerprints, root, result, max_in_flight)
    for row in result.records.values():
        result.stats.merge(Stats.from_json(json.loads(row["stats"])))
    if carried is not None:
        result.stats.merge(carried)
    result.wall_seconds = time.perf_counter() - start
    last = plan.merged or {}
    if changes or not last.get("complete") or last.get("fingerprint") != result.fingerprint:
        write_index(root, result.records)
        _write_merged(stage, root, result, len(inputs))
    return result


def stage_fingerprint(fingerprints: dict[str, str]) -> str:
    """A stage's fingerprint: its tasks' combined. What the next stage records as its upstream."""
    return digest(sorted(fingerprints.items()))


def expected_fingerprint(stage: Stage, inputs: list[TaskInput]) -> str:
    """The fingerprint `run_stage(stage, inputs, ...)` will give its folder, known before running it."""
    return stage_fingerprint({inp.key: stage.fingerprint(inp) for inp in inputs})


def _run_pending(
    stage: Stage,
    todo: list[TaskInput],
    fingerprints: dict[str, str],
    root: str,
    result: StageResult,
    max_in_flight: int | None,
) -> None:
    """Submit with a bounded number in flight; each completion costs O(in flight), not O(all tasks)."""
    options: dict[str, Any] = {"num_cpus": stage.num_cpus, "max_retries": 2, "retry_exceptions": False}
    if env := forwarded_env():
        options["runtime_env"] = {"env_vars": env}
    remote = ray.remote(_run_task).options(**options)
    limit = max_in_flight or max(64, int(4 * cluster_cpus() / max(stage.num_cpus, 0.01)))
    stage_ref = ray.put(stage)
    queue, in_flight = deque(todo), {}
    flushed = time.monotonic()
    # a log file (a Ray job's, CI's) gets a line every 30 s, not one per task
    every = 0.1 if sys.stderr.isatty() else 30
    with tqdm(
        total=result.tasks,
        initial=result.skipped,
        desc=stage.name,
        unit="task",
        file=sys.stderr,
        mininterval=every,
    ) as bar:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    inp = queue.popleft()
                    in_flight[remote.remote(stage_ref, inp, fingerprints[inp.key], root)] = inp
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                if len(in_flight) > 1:  # everything else already finished, without waiting again
                    more, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
                    ready = list(dict.fromkeys(ready + more))
                try:
                    records = ray.get(ready)  # one call for the batch; one by one only when a task failed
                except Exception:
                    records = None
                for n, ref in enumerate(ready):
                    inp = in_flight.pop(ref)
                    try:
                        result.records[inp.key] = index_row(records[n] if records else ray.get(ref))
                    except Exception as e:  # a bug or an unreadable input: report it, keep the others going
                        result.failed_total += 1
                        if len(result.failed) < MAX_ERRORS:
                            first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                            result.failed.append(f"{inp.url}: {type(e).__name__}: {first[:500]}")
                bar.update(len(ready))
                if time.monotonic() - flushed > INDEX_FLUSH_SECONDS:
                    write_index(root, result.records)
                    flushed = time.monotonic()
        except BaseException:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            write_index(root, result.records)  # what finished stays known to the next run
            raise
