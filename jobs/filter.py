"""tokenmill filter: Parquet documents -> the documents FineWeb's filters keep, PII redacted."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import add_stage_flags, run_stage_cli, stage_config
from pipeline.filters import FilterConfig
from pipeline.stages import filter_documents

DESCRIPTION = """\
Judge each document with FineWeb's filter sequence, keep those that pass and redact their e-mail
addresses, IP addresses and phone numbers:

  unicode repair (ftfy) -> url (UT1 blocklists) -> language (py3langid) -> gopher_repetition
  -> gopher_quality -> c4 (removes lines that are not prose) -> fineweb_quality -> badwords (LDNOOBW)
  -> decontamination (only with --decontaminate)

Published thresholds by default; each step is configured, or switched off (enabled = false), in the
[filter.<step>] tables of --config. Dropped documents go to OUTPUT/excluded/ with the reason
"step.score", and every score is kept in metadata.filter.<step>.<score> (typed Parquet columns), so
you can query them and re-threshold without extracting again. Rules that need spaces between words or an
English word list are skipped for other languages, and metadata.filter.skipped says so.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill filter", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of extract)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument("--languages", help="comma-separated language codes to keep (default: en; 'all' for any)")
    p.add_argument("--min-language-score", type=float, default=None, help="minimum language probability")
    p.add_argument(
        "--decontaminate",
        action="append",
        metavar="FILE",
        help="an evaluation set (.jsonl[.gz], .json, .txt[.gz], a folder or glob; local or s3://): drop "
        "documents sharing a 13-word n-gram with any of its items; repeat for more sets",
    )
    p.add_argument(
        "--decontaminate-action",
        choices=("drop", "mark"),
        default=None,
        help="drop such documents (default) or keep them with metadata.filter.decontamination.ngrams set",
    )
    p.add_argument("--no-pii", action="store_true", help="keep e-mail addresses, IPs and phone numbers")
    add_stage_flags(p, "filter")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace):
        languages = None
        if args.languages:
            languages = [x.strip() for x in args.languages.split(",") if x.strip() and x.strip() != "all"]
        flags = {
            "language": {"languages": languages, "min_score": args.min_language_score},
            "decontamination": {"files": args.decontaminate, "action": args.decontaminate_action},
            "pii": {"emails": False, "ips": False, "phones": False} if args.no_pii else {},
        }
        cfg = stage_config(FilterConfig, "filter", args.config, flags)
        return filter_documents(args.input, args.output, cfg, args.overwrite)

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
