"""The filter stage against datatrove's own FineWeb blocks on the WCXB dev pages: agreement, speed, drops.

1. The 1,358 dev pages (../shared/data/warc/cclike-wcxb-dev-000*.warc.gz) are extracted once with
   `tokenmill extract` into --work (1,343 documents).
2. Anchor: datatrove 0.10.1's blocks as in its FineWeb example (URLFilter, GopherRepetitionFilter,
   GopherQualityFilter, C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter) and
   C4BadWordsFilter, spaCy's tokenizer, in their own venv (bench/peer_venv.py), every step judged on every
   document (bench/filter_anchor.py).
3. Ours: the same steps of `FilterChain` on the same documents, also every step, with unicode repair and
   the language step off (the anchor has neither: FineWeb ran fastText before these blocks).
   Agreement per step: documents where both keep or both drop, over all documents. Disagreements are
   listed with datatrove's reason, ours and our score.
4. Speed: the whole default filter stage (repair, URL, language, the rules, bad words, PII on kept ones)
   as a task runs it (read Parquet, judge, redact, write kept and excluded Parquet), in this process on one
   core, median of --repeats passes; against the anchor's blocks per document measured in the same run.
5. The default stage's drops per rule on these pages, with two examples each.

    .venv/bin/python bench/filter_agreement.py            # ~5 min on 2 cores (the anchor: ~3)
    .venv/bin/python bench/filter_agreement.py --anchor /tmp/f7/anchor.jsonl --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.documents import Document, DocumentSink, read_documents  # noqa: E402
from pipeline.filters import FilterChain, FilterConfig, first_reason  # noqa: E402
from pipeline.language import LanguageConfig, language_identifier  # noqa: E402

WARCS = sorted(glob.glob(str(REPO.parent / "shared/data/warc/cclike-wcxb-dev-000*.warc.gz")))
STEPS = ("url", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality", "badwords")


def extracted(work: Path) -> list[str]:
    out = work / "extract"
    if not list(out.glob("part-*.parquet")):
        subprocess.run([str(REPO / ".venv/bin/tokenmill"), "extract", *WARCS, "-o", str(out)], check=True)
    return sorted(str(p) for p in out.glob("part-*.parquet"))


def run_anchor(work: Path, parts: list[str]) -> tuple[Path, float]:
    """datatrove's verdicts per document, and its blocks' time per document (ms)."""
    sys.path.insert(0, str(REPO / "bench"))
    from peer_venv import ensure_preset

    python = ensure_preset("datatrove")
    out = work / "anchor.jsonl"
    log = subprocess.run(
        [str(python), str(REPO / "bench/filter_anchor.py"), str(Path(parts[0]).parent), str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print(log)
    return out, float(re.search(r"total \(6 steps\)\s+([\d.]+)", log).group(1))


def agreement(parts: list[str], anchor: Path) -> None:
    theirs = {j["id"]: j["steps"] for j in map(json.loads, anchor.open())}
    cfg = dataclasses.replace(FilterConfig(), unicode_repair=False, language=LanguageConfig(enabled=False))
    chain = FilterChain(cfg)
    same, differ, docs = Counter(), defaultdict(list), 0
    for part in parts:
        for doc in read_documents(part):
            doc.metadata, docs = {}, docs + 1
            ours = chain.judge(doc, every_step=True)
            for step in STEPS:
                if (ours.get(step) is None) == (theirs[doc.id][step] is None):
                    same[step] += 1
                else:
                    differ[step].append(
                        (doc.id, theirs[doc.id][step], ours.get(step), doc.metadata["filter"])
                    )
    print(f"\nagreement with datatrove's blocks, {docs} documents, every step judged on every document")
    print(f"{'step':<18} {'agree':>7} {'ours drop':>10} {'theirs drop':>12}")
    for step in STEPS:
        ours_only = sum(1 for d in differ[step] if d[2])
        print(f"{step:<18} {same[step] / docs:7.4f} {ours_only:>10} {len(differ[step]) - ours_only:>12}")
    for step in STEPS:
        for doc_id, them, us, scores in differ[step]:
            score = scores.get(step, {}) if us or step not in scores else scores[step]
            print(f"  {step}: {doc_id} datatrove={them} ours={us} scores={score}")


def speed(parts: list[str], repeats: int) -> float:
    """Docs per second of the whole default stage on one core (median of `repeats` passes)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    chain = FilterChain(FilterConfig())  # built once per process, as a Ray worker does
    language_identifier()
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            start, n = time.perf_counter(), 0
            for i, part in enumerate(parts):
                with DocumentSink(f"{tmp}/{r}-{i}.parquet", f"{tmp}/excluded-{r}-{i}.parquet") as sink:
                    for doc in read_documents(part):
                        n += 1
                        reason = first_reason(chain.judge(doc))
                        if reason is None:
                            chain.redact(doc)
                            sink.keep(doc)
                        else:
                            sink.drop(doc, reason)
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def drops(parts: list[str]) -> None:
    chain = FilterChain(FilterConfig())
    reasons: Counter = Counter()
    examples: dict[str, list[Document]] = defaultdict(list)
    for part in parts:
        for doc in read_documents(part):
            doc.metadata = {}
            reason = first_reason(chain.judge(doc)) or "kept"
            reasons[reason] += 1
            if len(examples[reason]) < 2:
                examples[reason].append(doc)
    print("\nthe default filter stage on these pages: documents per reason")
    for reason, n in reasons.most_common():
        print(f"  {n:5d}  {reason}")
    for reason, docs in examples.items():
        if reason == "kept":
            continue
        for doc in docs:
            step = reason.split(".")[0]
            score = doc.metadata.get("filter", {}).get(step) or {
                k: doc.metadata.get(k) for k in ("language", "language_score")
            }
            snippet = " | ".join(doc.text[:300].splitlines())
            print(f"\n[{reason}] {doc.url}\n  scores: {score}\n  {snippet}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tokenmill-filter-bench")
    p.add_argument("--anchor", type=Path, help="an anchor JSONL made earlier (skips running datatrove)")
    p.add_argument("--anchor-ms", type=float, default=None, help="its blocks' ms/doc, with --anchor")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not WARCS:
        raise SystemExit("../shared/data/warc/cclike-wcxb-dev-000*.warc.gz not found")
    args.work.mkdir(parents=True, exist_ok=True)
    parts = extracted(args.work)
    anchor, anchor_ms = (args.anchor, args.anchor_ms) if args.anchor else run_anchor(args.work, parts)
    agreement(parts, anchor)
    rate = speed(parts, args.repeats)
    print(f"\nwhole filter stage, one core: {rate:.1f} docs/s ({1000 / rate:.2f} ms/doc)")
    if anchor_ms:
        print(f"datatrove's six blocks alone: {1000 / anchor_ms:.1f} docs/s ({anchor_ms:.2f} ms/doc)")
        print(f"ratio (ours / datatrove's): {rate * anchor_ms / 1000:.1f}x")
    drops(parts)


if __name__ == "__main__":
    main()
