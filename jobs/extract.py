"""tokenmill extract: WARC files -> Parquet documents (main text by trafilatura), one Ray task per file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import add_stage_flags, run_stage_cli, stage_config
from pipeline.extract import ExtractConfig
from pipeline.stages import extract


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill extract",
        description="Read WARC (or WET) files and extract the main text of each HTML response with "
        "trafilatura. One Ray task per file; a rerun skips files already done with the same config. "
        "Non-HTML, non-200, undecodable and oversized pages go to OUTPUT/excluded/ with their reason; "
        "corrupt records and files are counted, reported and skipped.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="WARC files, folders or globs (local or s3://)")
    p.add_argument("--output", "-o", required=True, help="folder for the Parquet documents (local or s3://)")
    add_stage_flags(p, "extract")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        cfg = stage_config(ExtractConfig, "extract", args.config, {})
        return extract(args.inputs, args.output, cfg, args.overwrite)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
