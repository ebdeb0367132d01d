"""What every `jobs/` entry point shares: one clear line and a non-zero exit for user mistakes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fsspec

from pipeline.documents import Document, documents_table, excluded_table, write_table
from pipeline.executor import StageLayout, StageResult
from pipeline.stats import Stats

T = TypeVar("T")


class UsageError(Exception):
    """A mistake the user can fix (bad argument, missing input): printed as one line, exit status 2."""


def run_cli(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    args = parser.parse_args(argv)  # argparse itself prints usage + one error line and exits 2
    try:
        return run(args) or 0
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ConnectionError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


@dataclass
class TaskDocuments:
    """What one task of a document stage keeps and drops, written together so nothing goes missing."""

    stats: Stats = field(default_factory=Stats)
    kept: list[Document] = field(default_factory=list)
    dropped: list[tuple[Document, str]] = field(default_factory=list)

    def keep(self, doc: Document) -> None:
        self.kept.append(doc)

    def drop(self, doc: Document, reason: str) -> None:
        self.stats.drop(reason)
        self.dropped.append((doc, reason))

    def write(self, layout: StageLayout, i: int) -> Stats:
        """Kept documents to part-i, dropped ones with their reason to excluded/; the task's stats."""
        self.stats.add("docs_out", len(self.kept))
        write_table(documents_table(self.kept), layout.part(i))
        write_table(excluded_table(self.dropped), layout.excluded(i))
        return self.stats


WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")


def expand_inputs(inputs: Sequence[str], suffixes: tuple[str, ...] = WARC_SUFFIXES) -> list[str]:
    """Files, folders (their files with one of `suffixes`) and globs, local or remote, sorted and unique."""
    found: list[str] = []
    for item in inputs:
        fs, path = fsspec.core.url_to_fs(item)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(ch in path for ch in "*?["):
            matches = [p for p in fs.glob(path) if fs.isfile(p)]
        elif fs.isdir(path):
            matches = [p for p in fs.find(path) if p.endswith(suffixes)]
        elif fs.isfile(path):
            matches = [path]
        else:
            raise UsageError(f"no such input: {item}")
        if not matches:
            raise UsageError(f"no input files in {item} (looked for {', '.join(suffixes)})")
        found.extend(prefix + p for p in matches)
    return sorted(dict.fromkeys(found))


def dataclass_from_table(cls: type[T], table: dict[str, Any], section: str) -> T:
    """Build a config dataclass from a TOML table; an unknown key is a UsageError naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise UsageError(
            f"[{section}] has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})


def print_stage_summary(result: StageResult) -> None:
    """One block a user reads after a stage: counts, drops by reason, errors, where the output is."""
    c = result.stats.counters
    print(
        f"{result.stage}: {c.get('docs_in', 0)} docs in, {c.get('docs_out', 0)} kept, "
        f"{sum(result.stats.dropped.values())} dropped in {result.wall_seconds:.1f}s"
        + (f" ({result.skipped} of {result.tasks} tasks already complete)" if result.skipped else "")
    )
    for reason, n in result.stats.dropped.most_common():
        print(f"  dropped {n:>6}  {reason}")
    for err in result.stats.errors[:10]:
        print(f"  error: {err}")
    if len(result.stats.errors) > 10:
        print(
            f"  ... and {len(result.stats.errors) - 10} more errors (see {result.output}/stats/merged.json)"
        )
    for fail in result.failed:
        print(f"  FAILED task: {fail}")
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
        return 1 if result.failed else 0

    return run_cli(parser, _run, argv)
