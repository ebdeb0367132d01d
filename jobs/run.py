"""tokenmill run CONFIG: every stage in order, from WARC files to generated text, resumable.

Each stage writes into its own folder under [run].output; rerunning the same config skips finished work.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import ray

from jobs import report
from jobs.common import UsageError, print_stage_summary, read_toml, run_cli
from jobs.train_tokenizer import summary_line
from pipeline import storage
from pipeline.config import from_table
from pipeline.dedup import DedupConfig
from pipeline.dedup_stages import dedup
from pipeline.extract import ExtractConfig
from pipeline.filters import FilterConfig
from pipeline.stages import extract, filter_documents
from tokenizer.tokenize import TokenizeConfig, tokenize
from tokenizer.train import TokenizerConfig, train_tokenizer

SECTIONS = {"run", "extract", "filter", "dedup", "tokenizer", "tokenize", "model", "pretrain", "generate"}


def load_config(path: str) -> dict[str, Any]:
    cfg = read_toml(path)
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


def run_all(cfg: dict[str, Any], output: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    from train.config import load_config_file, pretrain_config_from_tables
    from train.generate import generate_text
    from train.pretrain import pretrain

    out = storage.normalize(output or cfg["run"]["output"])
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
            if result.failed_total:
                raise SystemExit(
                    f"tokenmill run: stage {name} had failed tasks; fix them and rerun to resume"
                )
        return result

    def section(cls: type, name: str) -> Any:
        return from_table(cls, cfg.get(name, {}), name)

    configs = {  # every table checked before any work starts
        "extract": section(ExtractConfig, "extract"),
        "filter": section(FilterConfig, "filter"),
        "dedup": section(DedupConfig, "dedup"),
        "tokenizer": section(TokenizerConfig, "tokenizer"),
        "tokenize": section(TokenizeConfig, "tokenize"),
    }
    stage("extract", extract, cfg["run"]["inputs"], f"{out}/extract", configs["extract"], overwrite)
    stage("filter", filter_documents, f"{out}/extract", f"{out}/filter", configs["filter"], overwrite)
    stage("dedup", dedup, f"{out}/filter", f"{out}/dedup", configs["dedup"], overwrite)
    tokenizer_path = f"{out}/tokenizer/tokenizer.json"
    trained = stage(
        "train-tokenizer", train_tokenizer, f"{out}/dedup", tokenizer_path, configs["tokenizer"], overwrite
    )
    print(summary_line(trained))
    stage(
        "tokenize", tokenize, f"{out}/dedup", tokenizer_path, f"{out}/shards", configs["tokenize"], overwrite
    )

    # Training is one process on this machine: release the local Ray's workers so torch has every core.
    ray.shutdown()
    # [pretrain] data = ["{output}/shards:0.7", "s3://b/books:0.3"] mixes this run's shards with others
    data = [spec.replace("{output}", out) for spec in pre_cfg.data] or [f"{out}/shards"]
    resume = _resumable(f"{out}/pretrain", data, overwrite)
    verb = "resuming" if resume else "starting"
    print(f"pretrain: {verb} ({pre_cfg.max_steps} steps) -> {out}/pretrain", flush=True)
    stage("pretrain", pretrain, data, f"{out}/pretrain", pre_cfg, resume)

    rep = report.collect([out])
    rep["stage_wall_seconds"] = timings
    report_path = f"{out}/report.json"
    storage.write_json(report_path, rep)
    storage.write_bytes(f"{out}/report.html", report.render_html(rep).encode("utf-8"))
    print("\n" + report.format_report(rep))
    print(f"report: {report_path}")
    print(f"report: {out}/report.html (open it in a browser: plots, drops with examples)")

    gen = cfg.get("generate", {})
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


def _resumable(run_dir: str, data: list[str], overwrite: bool) -> bool:
    """Resume a checkpoint trained on these shards (and mixture); one trained on others is refused, or with
    overwrite started again (its files removed), so the run never mixes data it was not configured with."""
    from train.data_identity import data_change, data_sources
    from train.pretrain import checkpoint_data

    saved = checkpoint_data(run_dir)
    if saved is None:
        return False
    why = data_change(saved, data_sources(data))
    if why is None:
        return True
    if not overwrite:
        raise UsageError(
            f"{run_dir}: {why}: rerun with --overwrite to start pretraining again, or use another run folder"
        )
    storage.remove([f"{run_dir}/{name}" for name in storage.list_tree(run_dir)])
    return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill run",
        description="Run every stage of a TOML config in order: extract, filter, dedup, train-tokenizer, "
        "tokenize, pretrain, then write a report and print a generated continuation. Rerunning resumes.",
    )
    p.add_argument("config", metavar="CONFIG", help="TOML config, e.g. configs/demo.toml")
    p.add_argument("--output", "-o", help="run folder (default: [run].output in the config)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo what the config's changes affect, and start pretraining again if its shards changed "
        "(without it a changed config is refused, naming what changed)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> int:
        start = time.perf_counter()
        run_all(load_config(args.config), args.output, args.overwrite)
        print(f"\ndone in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        return 0

    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
