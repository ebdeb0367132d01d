"""tokenmill verify: check a shard folder against its manifest, byte for byte."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobs.common import UsageError, run_cli
from tokenizer.shards import read_manifest, verify_shards


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill verify",
        description="Check a shard folder (local or s3://) against its manifest.json: the tokenizer's "
        "sha256, and for every shard its size, sha256, document and token counts, dtype, offsets, token ids "
        "below the vocabulary size and an EOS ending every document. Prints one line per problem, naming "
        "the shard, and exits 1 if there is any.",
    )
    p.add_argument("shards", metavar="SHARDS", help="a shard folder (the output of tokenize)")
    p.add_argument("--quick", action="store_true", help="only sizes, counts and the tokenizer's sha256")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        try:
            manifest = read_manifest(args.shards)
        except ValueError as e:
            raise UsageError(f"{args.shards}: {e}") from None
        problems = verify_shards(args.shards, deep=not args.quick)
        for problem in problems:
            print(f"{args.shards}: {problem}")
        totals = manifest.totals()["all"]
        what = "checked" if args.quick else "verified"
        if problems:
            print(f"{len(problems)} problem(s) in {totals['num_shards']} shards")
            return 1
        counts = (
            f"{totals['num_shards']} shards, {totals['num_docs']} documents, {totals['num_tokens']} tokens"
        )
        print(f"ok: {counts} {what}")
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
