"""tokenmill filter: Parquet documents -> documents that pass language and quality filters."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from jobs.common import TaskDocuments, dataclass_from_table, run_stage_cli
from pipeline.documents import list_document_files, read_documents
from pipeline.executor import StageLayout, StageResult, run_stage
from pipeline.filters import FilterConfig, build_filters, first_failure
from pipeline.stats import Stats


def filter_file(i: int, path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    filters = build_filters(FilterConfig(**config))
    out = TaskDocuments()
    for doc in read_documents(path):
        out.stats.add("docs_in")
        reason = first_failure(filters, doc)
        if reason is None:
            out.keep(doc)
        else:
            out.drop(doc, reason)
    return out.write(layout, i)


def run(input_dir: str, output: str, cfg: FilterConfig | None = None) -> StageResult:
    return run_stage(
        "filter",
        filter_file,
        list_document_files(input_dir),
        output,
        dataclasses.asdict(cfg or FilterConfig()),
    )


def config_from_table(table: dict[str, Any]) -> FilterConfig:
    return dataclass_from_table(FilterConfig, table, "filter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill filter",
        description="Keep documents in the wanted languages (py3langid) that pass Gopher quality and "
        "repetition heuristics (datatrove). Dropped documents go to OUTPUT/excluded/ with their reason; "
        "scores are recorded in each document's metadata.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of extract)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument("--languages", default="en", help="comma-separated language codes to keep (default: en)")
    p.add_argument("--min-language-score", type=float, default=None, help="minimum language probability")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> StageResult:
        table: dict[str, Any] = {"languages": [x.strip() for x in args.languages.split(",") if x.strip()]}
        if args.min_language_score is not None:
            table["min_language_score"] = args.min_language_score
        return run(args.input, args.output, config_from_table(table))

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
