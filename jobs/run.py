"""tokenmill run CONFIG: every stage in order, from WARC files to generated text, resumable.

Each stage writes into its own folder under [run].output; rerunning the same config skips finished work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from typing import Any

import ray

from jobs import dedup, extract, report, tokenize, train_tokenizer
from jobs import filter as filter_stage
from jobs.common import UsageError, dataclass_from_table, print_stage_summary, run_cli
from pipeline.executor import write_json

SECTIONS = {"run", "extract", "filter", "dedup", "tokenizer", "tokenize", "model", "pretrain", "generate"}


def load_config(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise UsageError(f"no such config file: {path}")
    with open(path, "rb") as f:
        try:
            cfg = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path}: invalid TOML: {e}") from None
    unknown = sorted(set(cfg) - SECTIONS)
    if unknown:
        raise UsageError(
            f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(SECTIONS))}"
        )
    run_table = cfg.get("run", {})
    for key in ("inputs", "output"):
        if key not in run_table:
            raise UsageError(f"{path}: [run] needs '{key}'")
    return cfg


def run_all(cfg: dict[str, Any], output: str | None = None) -> dict[str, Any]:
    # Imported here: torch is only needed once the data stages are done.
    from train.config import ConfigError

    try:
        return _run_all(cfg, output)
    except ConfigError as e:  # too little data for a batch, a model change on resume...: the user's to fix
        raise UsageError(str(e)) from None


def _run_all(cfg: dict[str, Any], output: str | None) -> dict[str, Any]:
    from train.config import load_config_file, pretrain_config_from_tables
    from train.generate import generate_text
    from train.pretrain import pretrain

    out = (output or cfg["run"]["output"]).rstrip("/")
    # the model file gives the sizes; [model] and [pretrain] here override it. Checked before any work.
    base = load_config_file(cfg["run"]["model"]) if "model" in cfg["run"] else None
    pre_cfg = pretrain_config_from_tables(cfg.get("model", {}), cfg.get("pretrain", {}), base)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        timings[name] = round(time.perf_counter() - start, 2)
        if hasattr(result, "stats"):
            print_stage_summary(result)
            if result.failed:
                raise SystemExit(
                    f"tokenmill run: stage {name} had failed tasks; fix them and rerun to resume"
                )
        return result

    table = cfg.get
    stage(
        "extract",
        extract.run,
        cfg["run"]["inputs"],
        f"{out}/extract",
        extract.config_from_table(table("extract", {})),
    )
    stage(
        "filter",
        filter_stage.run,
        f"{out}/extract",
        f"{out}/filter",
        filter_stage.config_from_table(table("filter", {})),
    )
    stage("dedup", dedup.run, f"{out}/filter", f"{out}/dedup", dedup.config_from_table(table("dedup", {})))
    tok_cfg = dataclass_from_table(train_tokenizer.TokenizerConfig, table("tokenizer", {}), "tokenizer")
    tokenizer_path = f"{out}/tokenizer/tokenizer.json"
    print(
        train_tokenizer.summary_line(
            stage("train-tokenizer", train_tokenizer.run, f"{out}/dedup", tokenizer_path, tok_cfg)
        )
    )
    tok_stage_cfg = tokenize.config_from_table(table("tokenize", {}))
    stage("tokenize", tokenize.run, f"{out}/dedup", tokenizer_path, f"{out}/shards", tok_stage_cfg)

    # Training is one process on this machine: release the local Ray's workers so torch has every core.
    ray.shutdown()
    resume = os.path.exists(f"{out}/pretrain/ckpt.pt")
    verb = "resuming" if resume else "starting"
    print(f"pretrain: {verb} ({pre_cfg.max_steps} steps) -> {out}/pretrain", flush=True)
    stage("pretrain", pretrain, f"{out}/shards", f"{out}/pretrain", pre_cfg, resume)

    rep = report.collect([out])
    rep["stage_wall_seconds"] = timings
    report_path = f"{out}/report.json"
    write_json(report_path, rep)
    print("\n" + report.format_report(rep))
    print(f"report: {report_path}")

    gen = table("generate", {})
    prompt = gen.get("prompt", "The")
    text = generate_text(
        f"{out}/pretrain",
        prompt,
        max_new_tokens=gen.get("max_new_tokens", 80),
        temperature=gen.get("temperature", 0.8),
        top_k=gen.get("top_k", 40),
        seed=gen.get("seed", 0),
    )
    print(f"\ngenerated (prompt {prompt!r}):\n{prompt}{text}")
    return {"report": rep, "generated": text, "output": out}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill run",
        description="Run every stage of a TOML config in order: extract, filter, dedup, train-tokenizer, "
        "tokenize, pretrain, then write a report and print a generated continuation. Rerunning resumes.",
    )
    p.add_argument("config", metavar="CONFIG", help="TOML config, e.g. configs/demo.toml")
    p.add_argument("--output", "-o", help="run folder (default: [run].output in the config)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        start = time.perf_counter()
        run_all(load_config(args.config), args.output)
        print(f"\ndone in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
