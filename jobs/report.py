"""tokenmill report: per-stage document counts, drop reasons, errors and wall times, printed and as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from jobs.common import UsageError, run_cli
from pipeline import storage
from pipeline.stage_folder import MERGED
from tokenizer.shards import MANIFEST_FILE, read_manifest

STAGE_ORDER = ["extract", "filter", "dedup", "train-tokenizer", "tokenize", "pretrain"]


def _stage_row(summary: dict[str, Any]) -> dict[str, Any]:
    counters = summary.get("counters", {})
    return {
        "stage": summary["stage"],
        "output": summary.get("output"),
        "docs_in": counters.get("docs_in", 0),
        "docs_out": counters.get("docs_out", counters.get("docs_in", 0)),
        "dropped": summary.get("dropped", {}),
        "errors": summary.get("errors", []),
        "errors_total": summary.get("errors_total", len(summary.get("errors", []))),
        "complete": summary.get("complete", True),
        "tasks_failed": summary.get("tasks_failed", []),
        "wall_seconds": summary.get("wall_seconds"),
        "counters": counters,
    }


def _pretrain_row(run_dir: str) -> dict[str, Any] | None:
    try:
        text = storage.read_bytes(storage.join(run_dir, "metrics.jsonl")).decode("utf-8")
    except FileNotFoundError:
        return None
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not rows:
        return None
    val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    return {
        "stage": "pretrain",
        "output": run_dir,
        "steps": rows[-1]["step"],
        "final_loss": rows[-1]["loss"],
        "final_val_loss": val[-1] if val else None,
        "tokens_per_s": rows[-1].get("tokens_per_s"),
        "wall_seconds": rows[-1].get("elapsed_s"),
    }


def collect(dirs: Sequence[str]) -> dict[str, Any]:
    """Find stage outputs in the given folders (a stage folder, or a run folder holding several)."""
    stages: dict[str, dict[str, Any]] = {}
    shards: dict[str, Any] | None = None
    for given in dirs:
        d = storage.normalize(given)
        if not storage.exists(d):
            raise UsageError(f"no such folder: {given}")
        for c in [d, *storage.subfolders(d)]:
            if storage.exists(storage.join(c, MERGED)):
                summary = storage.read_json(storage.join(c, MERGED))
                stages[summary["stage"]] = _stage_row(summary)
            for path in storage.glob(storage.join(c, "*.stats.json")):
                summary = storage.read_json(path)
                stages[summary["stage"]] = _stage_row(summary)
            if storage.exists(storage.join(c, MANIFEST_FILE)):
                manifest = read_manifest(c)
                shards = {
                    "folder": c,
                    "dtype": manifest.dtype,
                    "vocab_size": manifest.tokenizer.vocab_size,
                    **manifest.totals(),
                }
            if (row := _pretrain_row(c)) is not None:
                stages["pretrain"] = row
    if not stages:
        raise UsageError(
            f"no stage outputs (stats/merged.json, manifest.json, metrics.jsonl) in {', '.join(dirs)}"
        )
    ordered = [stages[s] for s in STAGE_ORDER if s in stages]
    ordered += [v for k, v in stages.items() if k not in STAGE_ORDER]
    return {"stages": ordered, "shards": shards}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'stage':<16}{'docs in':>9}{'kept':>9}{'dropped':>9}{'errors':>8}{'seconds':>9}"]
    incomplete = [s["stage"] for s in report["stages"] if not s.get("complete", True)]
    for s in report["stages"]:
        if s["stage"] == "pretrain":
            continue
        dropped = sum(s["dropped"].values())
        secs = f"{s['wall_seconds']:.1f}" if s.get("wall_seconds") is not None else "-"
        lines.append(
            f"{s['stage']:<16}{s['docs_in']:>9}{s['docs_out']:>9}{dropped:>9}{s['errors_total']:>8}{secs:>9}"
        )
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<18}{n:>6}  {reason}")
    if incomplete:
        lines.append(f"INCOMPLETE (interrupted or failed tasks; rerun to finish): {', '.join(incomplete)}")
    if (sh := report.get("shards")) is not None:
        lines.append(
            f"shards: {sh['train']['num_tokens']:,} train tokens in {sh['train']['num_docs']} docs "
            f"({sh['train']['num_shards']} shards), {sh['val']['num_tokens']:,} val tokens in "
            f"{sh['val']['num_docs']} docs; {sh['dtype']}, vocab {sh['vocab_size']}  [{sh['folder']}]"
        )
    for s in report["stages"]:
        if s["stage"] == "pretrain":
            val = f", val loss {s['final_val_loss']:.3f}" if s.get("final_val_loss") is not None else ""
            lines.append(
                f"pretrain: {s['steps']} steps, loss {s['final_loss']:.3f}{val}, "
                f"{s.get('tokens_per_s') or 0:,.0f} tokens/s, {s.get('wall_seconds') or 0:.0f}s"
                f"  [{s['output']}]"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill report",
        description="Summarise stage outputs: documents in and out, drops by reason, errors and wall time "
        "per stage, shard totals and the last pretraining loss. Give a run folder (tokenmill run's output) "
        "or stage folders.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folder or stage output folders")
    p.add_argument("--output", "-o", help="also write the report as JSON here (default: DIR/report.json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        report = collect(args.dirs)
        path = args.output or storage.join(args.dirs[0], "report.json")
        storage.write_json(path, report)
        print(format_report(report))
        print(f"report: {path}")
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
