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
        description="Drop repeated document ids, exact duplicates (normalised text hash) and near duplicates "
        "(MinHash LSH over word n-grams, datasketch) across all input files; the first document of each "
        "cluster in input order is kept. Dropped documents go to OUTPUT/excluded/ with the id of the "
        "document they duplicate. Three resumable steps; their work files are in OUTPUT/_work.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of filter)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument(
        "--threshold", type=float, default=None, help="estimated Jaccard above which two are duplicates"
    )
    p.add_argument("--num-perm", type=int, default=None, help="MinHash permutations")
    p.add_argument("--ngram", type=int, default=None, help="words per shingle")
    add_stage_flags(p, "dedup")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        flags = {k: getattr(args, k) for k in ("threshold", "num_perm", "ngram")}
        return dedup(
            args.input, args.output, stage_config(DedupConfig, "dedup", args.config, flags), args.overwrite
        )

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
