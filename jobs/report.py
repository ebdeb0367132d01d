"""tokenmill report: a whole run (or stage folders) summarised: printed, as report.json and as a
self-contained report.html with plots. The work is in the `report` package."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from jobs.common import run_cli
from pipeline import storage
from report import DEFAULT_SAMPLE_DOCS, collect, format_summary, render_html

__all__ = ["build_parser", "collect", "format_report", "main", "render_html"]


def format_report(report: dict[str, Any]) -> str:
    """The terminal summary (the name `tokenmill run` calls)."""
    return format_summary(report)


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill report",
        description="Summarise a run: documents in and out, drops by reason (with examples), errors and wall "
        "time per stage; languages, lengths in characters and tokens, duplicate clusters and top domains of "
        "the documents; tokens per shard and split, bytes per token; the pretraining loss. Prints a summary "
        "and writes report.json and a self-contained report.html (plots inline, no network needed). Give a "
        "run folder (tokenmill run's output) or stage folders. Counts are exact; distributions are read from "
        "at most --sample-docs documents per stage, and the report says when it sampled.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folder or stage output folders")
    p.add_argument(
        "--output", "-o", metavar="JSON", help="write the JSON report here (default: DIR/report.json)"
    )
    p.add_argument("--html", metavar="FILE", help="write the HTML report here (default: DIR/report.html)")
    p.add_argument(
        "--sample-docs",
        type=_count,
        default=DEFAULT_SAMPLE_DOCS,
        metavar="N",
        help=f"read at most N kept and N dropped documents per stage for languages, lengths, domains and "
        f"examples, and whole shards until N documents for tokens per document (default "
        f"{DEFAULT_SAMPLE_DOCS:,}; 0: read everything)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        report = collect(args.dirs, args.sample_docs)
        json_path = args.output or storage.join(args.dirs[0], "report.json")
        html_path = args.html or storage.join(args.dirs[0], "report.html")
        storage.write_json(json_path, report)
        storage.write_bytes(html_path, render_html(report).encode("utf-8"))
        print(format_summary(report))
        print(f"report: {json_path}")
        print(f"report: {html_path}")
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
