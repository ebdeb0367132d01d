"""Near-duplicate quality and signature speed on the labelled set (real texts, labelled clusters).

Truth: a pair of documents is a near-duplicate pair when its true word-5-gram Jaccard (computed here
exactly, the way the set's `jaccard_to_base` is) reaches the threshold. Pairs are taken within each
labelled cluster, plus any pair we predict across clusters (checked exactly too).
- precision: predicted pairs (same output cluster) that are true pairs
- recall: true pairs that end up in the same output cluster
- cluster precision: predicted pairs inside one labelled cluster (a transitive chain A~B~C may join
  A and C below the threshold: that still counts here)
Speed: our minhash_signature against plain datasketch (MinHash.update per shingle), same run.

    .venv/bin/python bench/dedup_quality.py
    .venv/bin/python bench/dedup_quality.py --threshold 0.7 --verify-threshold 0.75
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import re
import sys
import time
from collections import defaultdict

import numpy as np
from datasketch import MinHash

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.dedup import DedupConfig, exact_key, find_duplicates, minhash_signature  # noqa: E402

DATA = "/work/shared/data/dedup/neardup-dev.jsonl.gz"
WORD_RE = re.compile(r"\w+")


def shingles(text: str, n: int) -> set[str]:
    words = WORD_RE.findall(text.lower())
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def true_jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def anchor_signature(text: str, cfg: DedupConfig) -> np.ndarray:
    words = WORD_RE.findall(text.lower())
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
    for i in range(max(1, len(words) - cfg.ngram + 1)):
        m.update(" ".join(words[i : i + cfg.ngram]).encode("utf-8"))
    return m.hashvalues


def score(rows: list[dict], dropped: dict, threshold: float, ngram: int) -> dict:
    ids = [r["id"] for r in rows]
    label = {r["id"]: r["cluster"] for r in rows}
    sh = {r["id"]: shingles(r["text"], ngram) for r in rows}
    out_cluster = {i: dropped[i].cluster if i in dropped else i for i in ids}

    predicted = set()
    members = defaultdict(list)
    for i in ids:
        members[out_cluster[i]].append(i)
    for group in members.values():
        predicted.update(frozenset(p) for p in itertools.combinations(sorted(group), 2))

    by_label = defaultdict(list)
    for i in ids:
        by_label[label[i]].append(i)
    candidates = {frozenset(p) for g in by_label.values() for p in itertools.combinations(g, 2)} | predicted
    truth = {p for p in candidates if true_jaccard(*(sh[i] for i in p)) >= threshold}
    hits = len(predicted & truth)
    same_label = sum(len({label[i] for i in p}) == 1 for p in predicted)
    return {
        "docs": len(ids),
        "true_pairs": len(truth),
        "predicted_pairs": len(predicted),
        "precision": hits / len(predicted) if predicted else 1.0,
        "recall": hits / len(truth) if truth else 1.0,
        "cluster_precision": same_label / len(predicted) if predicted else 1.0,
        "dropped": len(dropped),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--threshold", type=float, default=DedupConfig.threshold)
    ap.add_argument("--verify-threshold", type=float, default=None)
    ap.add_argument("--num-perm", type=int, default=DedupConfig.num_perm)
    ap.add_argument("--anchor-docs", type=int, default=300, help="docs the slow anchor signs (speed only)")
    args = ap.parse_args()
    if not os.path.exists(args.data):
        sys.exit(f"skipped: {args.data} not found (the shared data folder is absent)")
    cfg = DedupConfig(
        num_perm=args.num_perm, threshold=args.threshold, verify_threshold=args.verify_threshold
    )

    with gzip.open(args.data, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows]
    n_words = sum(len(WORD_RE.findall(t)) for t in texts)

    minhash_signature(texts[0], cfg)  # warm-up
    sample = texts[: args.anchor_docs]
    # interleave ours and the anchor over the same documents, so load drifts hit both alike
    ours_s = anchor_s = 0.0
    for t in sample:
        t0 = time.perf_counter()
        minhash_signature(t, cfg)
        t1 = time.perf_counter()
        anchor_signature(t, cfg)
        ours_s, anchor_s = ours_s + t1 - t0, anchor_s + time.perf_counter() - t1

    t0 = time.perf_counter()
    keys = [exact_key(t) for t in texts]
    sigs = np.stack([minhash_signature(t, cfg) for t in texts])
    t1 = time.perf_counter()
    ids = [r["id"] for r in rows]
    dropped = {ids[i]: d for i, d in find_duplicates(ids, keys, sigs, cfg).items()}
    t2 = time.perf_counter()

    s = score(rows, dropped, cfg.threshold, cfg.ngram)
    print(f"{s['docs']} docs ({n_words / len(texts):.0f} words each on average), {cfg}")
    print(
        f"precision {s['precision']:.4f}  recall {s['recall']:.4f}"
        f"  cluster precision {s['cluster_precision']:.4f}"
        f"  (true pairs {s['true_pairs']}, predicted pairs {s['predicted_pairs']}, dropped {s['dropped']})"
    )
    print(
        f"signatures: ours {len(sample) / ours_s:.0f} docs/s, anchor (MinHash.update per shingle) "
        f"{len(sample) / anchor_s:.0f} docs/s on {len(sample)} docs: ratio {anchor_s / ours_s:.1f}x"
    )
    print(
        f"all {len(texts)} docs: keys+signatures {len(texts) / (t1 - t0):.0f} docs/s, "
        f"find_duplicates {len(texts) / (t2 - t1):.0f} docs/s"
    )


if __name__ == "__main__":
    main()
