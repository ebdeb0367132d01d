"""What every `jobs/` entry point shares: one clear line and exit status 2 for user mistakes, the summary
a user reads after a data stage, and the flags every data stage takes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pipeline.config import UsageError, from_table, read_toml
from pipeline.stage import StageResult

__all__ = ["UsageError", "add_stage_flags", "print_stage_summary", "read_toml", "run_cli", "run_stage_cli"]
T = TypeVar("T")


def run_cli(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    args = parser.parse_args(argv)  # argparse itself prints usage + one error line and exits 2
    try:
        return run(args) or 0
    except (UsageError, FileNotFoundError, ConnectionError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def stage_config(cls: type[T], section: str, config_file: str | None, flags: dict[str, Any]) -> T:
    """A stage's config: the [section] of `config_file` (as `tokenmill run` reads it), then the flags."""
    table = dict(read_toml(config_file).get(section, {})) if config_file else {}
    return from_table(cls, _merged(table, flags), section)


def _merged(table: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """`table` with the flags given (not None) on top; a dict of flags fills a nested table key by key."""
    out = dict(table)
    for key, value in flags.items():
        if isinstance(value, dict):
            if all(v is None for v in value.values()):
                continue
            inner = out.get(key, {})
            # a value that should be a table but is not: kept, so the converter names it
            out[key] = _merged(inner, value) if isinstance(inner, dict) else inner
        elif value is not None:
            out[key] = value
    return out


def add_stage_flags(p: argparse.ArgumentParser, section: str) -> None:
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help=f"read the [{section}] table of this TOML file (the format of `tokenmill run`'s config, e.g. "
        "configs/demo.toml); the flags here override it",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo tasks that OUTPUT holds from another config or code version, and remove those of inputs "
        "no longer given (without it such a folder is refused, naming what changed)",
    )


def print_stage_summary(result: StageResult) -> None:
    """One block a user reads after a stage: counts, drops by reason, errors, where the output is."""
    c = result.stats.counters
    notes = []
    if result.skipped:
        notes.append(f"{result.skipped} of {result.tasks} tasks already complete")
    if result.redone:
        notes.append(f"{result.redone} redone")
    if result.removed:
        notes.append(f"{result.removed} of inputs no longer given removed")
    print(
        f"{result.stage}: {c.get('docs_in', 0)} docs in, {c.get('docs_out', 0)} kept, "
        f"{sum(result.stats.dropped.values())} dropped in {result.wall_seconds:.1f}s"
        + (f" ({'; '.join(notes)})" if notes else "")
    )
    for reason, n in result.stats.dropped.most_common():
        print(f"  dropped {n:>6}  {reason}")
    errors = result.stats.errors
    for err in errors[:10]:
        print(f"  error: {err}")
    total = result.stats.errors_total
    if total > min(len(errors), 10):
        where = "all" if len(errors) == total else f"the first {len(errors)}"
        print(
            f"  ... {total} errors in all ({where} in {result.output}/stats/merged.json, each task's in its "
            "completions/ record)"
        )
    for fail in result.failed[:10]:
        print(f"  FAILED task: {fail}")
    if result.failed_total > 10:
        print(f"  ... {result.failed_total} failed tasks in all (see {result.output}/stats/merged.json)")
    if result.failed_total:
        print("  rerun the same command to retry the failed tasks; finished ones are kept")
    print(f"  output: {result.output}")


def run_stage_cli(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], StageResult],
    argv: Sequence[str] | None,
) -> int:
    """run_cli for a data stage: print its summary; exit 1 when a task failed (its inputs are named)."""

    def _run(args: argparse.Namespace) -> int:
        result = run(args)
        print_stage_summary(result)
        return 1 if result.failed_total else 0

    return run_cli(parser, _run, argv)
