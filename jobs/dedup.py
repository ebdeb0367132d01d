"""tokenmill dedup: drop exact and near (MinHash) duplicates across all input files."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import add_stage_flags, run_stage_cli, stage_config
from pipeline.dedup import DedupConfig
from pipeline.dedup_stages import dedup


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill dedup",
        description="Drop repeated document ids, exact duplicates (normalised text) and near duplicates "
        "(estimated Jaccard of word n-gram sets, one-permutation MinHash with LSH bands) across all input "
        "files. Each cluster keeps its first document in input order; a dropped document goes to "
        "OUTPUT/excluded/ with the id of the document kept in its place. Runs as waves of Ray tasks over "
        "partitioned work files in OUTPUT/_work, each resumable; no process holds the whole corpus.",
        epilog="Add a new crawl to a corpus you already have: tokenmill dedup NEW --against OLD -o NEW_DEDUP "
        "drops the documents of NEW that duplicate OLD (OLD is only read).",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of filter)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument(
        "--against",
        metavar="DIR",
        help="an earlier corpus (a finished document folder): documents duplicating it are dropped too",
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="estimated Jaccard at which two are duplicates"
    )
    p.add_argument("--ngram", type=int, default=None, help="words per shingle")
    p.add_argument("--bins", type=int, default=None, help="MinHash bins per document (one byte each)")
    p.add_argument("--bands", type=int, default=None, help="LSH bands")
    p.add_argument("--rows", type=int, default=None, help="bins per LSH band")
    p.add_argument(
        "--exact-margin",
        type=float,
        default=None,
        help="a drop estimated less than this above the threshold is checked on the exact shingle sets "
        "(default 0.03; 0: trust the sketch)",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="work files each wave spreads its records over (default: sqrt(documents / 1000))",
    )
    add_stage_flags(p, "dedup")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        names = ("threshold", "ngram", "bins", "bands", "rows", "exact_margin", "partitions")
        cfg = stage_config(DedupConfig, "dedup", args.config, {k: getattr(args, k) for k in names})
        return dedup(args.input, args.output, cfg, args.overwrite, against=args.against)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
