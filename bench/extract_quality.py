"""Extraction quality and speed: our extract_document against trafilatura with all its defaults.

Word-level F1 against the hand-reviewed main content of every WCXB dev page (truth keyed by url), plus
the share of the truth's must-have snippets found and must-not-have snippets (boilerplate) avoided.
The anchor (trafilatura.extract(body), every option at its default) runs on the same pages in the same
process, so the printed ratios hold on any machine.

    .venv/bin/python bench/extract_quality.py                 # all 1,358 dev pages, our defaults
    .venv/bin/python bench/extract_quality.py --limit 200 --variant precision --variant no_tables
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import gzip
import json
import os
import statistics
import sys
import time

import trafilatura

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.extract import ExtractConfig, extract_document, word_f1  # noqa: E402
from pipeline.stats import Stats  # noqa: E402
from pipeline.warc import iter_warc_responses  # noqa: E402

DATA = "/work/shared/data"
VARIANTS = {
    "ours": {},
    "comments": {"include_comments": True},
    "precision": {"favor_precision": True},
    "recall": {"favor_recall": True},
    "no_tables": {"include_tables": False},
    "fast": {"fast": True},
    "no_time_limit": {"time_limit_s": 0.0},
}


def load_pages(warcs: list[str], truth_path: str, limit: int | None) -> tuple[list, dict]:
    with gzip.open(truth_path, "rt", encoding="utf-8") as f:
        truth = {row["url"]: row for row in map(json.loads, f)}
    pages, seen = [], set()
    for path in warcs:
        for resp in iter_warc_responses(path, Stats()):
            if resp.url in truth and resp.status == 200 and resp.url not in seen:
                seen.add(resp.url)
                pages.append((path, resp))
                if limit and len(pages) >= limit:
                    return pages, truth
    return pages, truth


def snippet_scores(text: str, row: dict) -> tuple[float | None, float | None]:
    norm = " ".join(text.split()).lower()
    with_ = [s for s in row.get("with") or [] if s.strip()]
    without = [s for s in row.get("without") or [] if s.strip()]
    found = sum(" ".join(s.split()).lower() in norm for s in with_) / len(with_) if with_ else None
    avoided = (
        sum(" ".join(s.split()).lower() not in norm for s in without) / len(without) if without else None
    )
    return found, avoided


def evaluate(runs: dict, pages: list, truth: dict) -> list[dict]:
    """Run every config on each page in turn, so machine load drifts hit all of them alike."""
    texts: dict[str, list] = {name: [] for name in runs}
    seconds = dict.fromkeys(runs, 0.0)
    names = list(runs)
    for i, (path, resp) in enumerate(pages):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate: no config always runs first
            run = runs[name]
            t0 = time.perf_counter()
            texts[name].append(run(path, resp))
            seconds[name] += time.perf_counter() - t0
    results = []
    for name in runs:
        f1s, found, avoided = [], [], []
        for (_, resp), text in zip(pages, texts[name], strict=True):
            row = truth[resp.url]
            f1s.append(word_f1(text or "", row["main_content"]))
            w, wo = snippet_scores(text or "", row)
            found += [] if w is None else [w]
            avoided += [] if wo is None else [wo]
        results.append(
            {
                "name": name,
                "mean_f1": statistics.mean(f1s),
                "median_f1": statistics.median(f1s),
                "snippets_found": statistics.mean(found) if found else float("nan"),
                "boilerplate_avoided": statistics.mean(avoided) if avoided else float("nan"),
                "empty_or_dropped": sum(t is None for t in texts[name]),
                "pages_per_s": len(pages) / seconds[name],
            }
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warcs", default=f"{DATA}/warc/cclike-wcxb-dev-000*.warc.gz")
    ap.add_argument("--truth", default=f"{DATA}/extraction/wcxb-dev-truth.jsonl.gz")
    ap.add_argument("--limit", type=int, default=None, help="first N truth pages only")
    ap.add_argument(
        "--variant", action="append", choices=sorted(VARIANTS), help="ExtractConfig variants to add"
    )
    args = ap.parse_args()
    if not os.path.exists(args.truth):
        sys.exit(f"skipped: {args.truth} not found (the shared data folder is absent)")

    pages, truth = load_pages(sorted(glob.glob(args.warcs)), args.truth, args.limit)
    print(f"{len(pages)} truth pages from {args.warcs}")

    def anchor(path, resp):
        return trafilatura.extract(resp.body)  # every option at its default

    def ours(cfg):
        def run(path, resp):
            doc, reason = extract_document(resp, os.path.basename(path), cfg=cfg)
            return None if reason else doc.text

        return run

    trafilatura.extract(pages[0][1].body)  # warm up lazy imports before any timing
    runs = {"anchor": anchor}
    for name in ["ours"] + (args.variant or []):
        runs[name] = ours(dataclasses.replace(ExtractConfig(), **VARIANTS[name]))
    results = evaluate(runs, pages, truth)

    base = results[0]
    print(
        f"{'config':16} {'mean F1':>8} {'median':>7} {'F1/anchor':>9} {'snip+':>6} {'boiler-':>7} "
        f"{'dropped':>7} {'pages/s':>8} {'speed/anchor':>12}"
    )
    for r in results:
        print(
            f"{r['name']:16} {r['mean_f1']:8.4f} {r['median_f1']:7.4f} {r['mean_f1'] / base['mean_f1']:9.3f} "
            f"{r['snippets_found']:6.3f} {r['boilerplate_avoided']:7.3f} {r['empty_or_dropped']:7d} "
            f"{r['pages_per_s']:8.1f} {r['pages_per_s'] / base['pages_per_s']:12.2f}"
        )
    ours = next(r for r in results if r["name"] == "ours")
    verdict = "at or above" if ours["mean_f1"] >= base["mean_f1"] else "BELOW"
    print(f"our word-F1 {ours['mean_f1']:.4f} is {verdict} trafilatura's own {base['mean_f1']:.4f}")


if __name__ == "__main__":
    main()
