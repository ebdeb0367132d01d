"""tokenmill filter: Parquet documents -> documents that pass language and quality filters."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import add_stage_flags, run_stage_cli, stage_config
from pipeline.filters import FilterConfig
from pipeline.stages import filter_documents


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill filter",
        description="Keep documents in the wanted languages (py3langid) that pass Gopher quality and "
        "repetition heuristics (datatrove). Dropped documents go to OUTPUT/excluded/ with their reason; "
        "scores are recorded in each document's metadata.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of extract)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument("--languages", help="comma-separated language codes to keep (default: en)")
    p.add_argument("--min-language-score", type=float, default=None, help="minimum language probability")
    add_stage_flags(p, "filter")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        languages = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else None
        flags = {"languages": languages, "min_language_score": args.min_language_score}
        cfg = stage_config(FilterConfig, "filter", args.config, flags)
        return filter_documents(args.input, args.output, cfg, args.overwrite)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
