"""The `tokenmill` command: one subcommand per stage, each also runnable as `python -m jobs.<stage>`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module, one line of help). Modules load lazily so `tokenmill --help` does not import torch.
COMMANDS = {
    "run": ("jobs.run", "run every stage from a TOML config (the demo: configs/demo.toml)"),
    "extract": ("jobs.extract", "WARC files -> Parquet documents (trafilatura main text)"),
    "filter": ("jobs.filter", "FineWeb's filters, PII redaction, decontamination; every drop explained"),
    "dedup": ("jobs.dedup", "drop exact and MinHash near duplicates across all files"),
    "train-tokenizer": ("jobs.train_tokenizer", "train a byte-level BPE on a uniform sample of documents"),
    "tokenize": ("jobs.tokenize", "documents -> globally shuffled Arrow token shards + manifest.json"),
    "verify": ("jobs.verify", "check a shard folder against its manifest, byte for byte"),
    "report": ("jobs.report", "a whole-run report: summary, report.json and report.html with plots"),
    "pretrain": ("jobs.pretrain", "pretrain the GPT on a shard folder"),
    "generate": ("jobs.generate", "sample text from a pretrained checkpoint"),
    "eval": ("jobs.eval", "a checkpoint's loss, perplexity and bits per byte on a split of shards"),
}


def usage() -> str:
    lines = [
        "usage: tokenmill COMMAND [ARGS...]    (tokenmill COMMAND --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<17}{help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Data stages run on Ray: on a cluster when RAY_ADDRESS is set (as `ray job submit` does),",
        "otherwise on a local Ray started for the command. Every stage resumes: rerun it and finished",
        "work is skipped.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"tokenmill: error: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
