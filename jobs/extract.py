"""tokenmill extract: WARC files -> Parquet documents (main text by trafilatura), one Ray task per file."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from jobs.common import TaskDocuments, dataclass_from_table, expand_inputs, run_stage_cli
from pipeline.executor import StageLayout, StageResult, run_stage
from pipeline.extract import ExtractConfig, extract_document
from pipeline.stats import Stats
from pipeline.warc import CorruptInputError, iter_warc_responses


def extract_file(i: int, warc_path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    cfg = ExtractConfig(**config)
    out = TaskDocuments()
    try:
        for response in iter_warc_responses(warc_path, out.stats):
            out.stats.add("docs_in")
            doc, reason = extract_document(response, warc_path, cfg)
            if reason is None:
                out.keep(doc)
            else:
                out.drop(doc, reason)
    except CorruptInputError as e:  # the file is reported, the job goes on with the others
        out.stats.add("corrupt_files")
        out.stats.error(str(e))
    out.stats.add("text_chars_out", sum(len(d.text) for d in out.kept))
    return out.write(layout, i)


def run(inputs: Sequence[str], output: str, cfg: ExtractConfig | None = None) -> StageResult:
    files = expand_inputs(inputs)
    return run_stage("extract", extract_file, files, output, dataclasses.asdict(cfg or ExtractConfig()))


def config_from_table(table: dict[str, Any]) -> ExtractConfig:
    return dataclass_from_table(ExtractConfig, table, "extract")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill extract",
        description="Read WARC files and extract the main text of each HTML response with trafilatura. "
        "One Ray task per file; rerunning skips files already done. Non-HTML, non-200 and empty pages go to "
        "OUTPUT/excluded/ with their reason; corrupt records are counted and skipped.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="WARC files, folders or globs (local or s3://)")
    p.add_argument("--output", "-o", required=True, help="folder for the Parquet documents")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage_cli(build_parser(), lambda args: run(args.inputs, args.output), argv)


if __name__ == "__main__":
    raise SystemExit(main())
