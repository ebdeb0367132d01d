from __future__ import annotations

import itertools
import random
import re
import time
from typing import NamedTuple

import numpy as np
import pytest

from pipeline.dedup import (
    DedupConfig,
    Duplicate,
    estimated_jaccard,
    exact_key,
    find_duplicates,
    minhash_signature,
    shingle_hashes,
)
from tests.pipeline.conftest import DATA, read_jsonl_gz


class Dropped(NamedTuple):
    reason: str
    kept_id: str
    cluster: str


WORD_RE = re.compile(r"\w+")


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    def shingles(t):
        w = WORD_RE.findall(t.lower())
        return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def by_id(ids: list[str], dups: dict[int, Duplicate]) -> dict[str, Dropped]:
    return {ids[i]: Dropped(d.reason, ids[d.kept], d.cluster) for i, d in dups.items()}


def run(texts: list[str], ids: list[str] | None = None, cfg: DedupConfig | None = None) -> dict[str, Dropped]:
    cfg = cfg or DedupConfig()
    ids = ids or [f"d{i}" for i in range(len(texts))]
    sigs = (
        np.stack([minhash_signature(t, cfg) for t in texts])
        if texts
        else np.zeros((0, cfg.num_perm), np.uint64)
    )
    return by_id(ids, find_duplicates(ids, [exact_key(t) for t in texts], sigs, cfg))


@pytest.fixture(scope="module")
def labelled():
    # real texts with labelled near-duplicate clusters (WCXB-derived, CC-BY-4.0)
    return read_jsonl_gz(DATA / "neardup-subset.jsonl.gz")


def test_exact_key_normalises_whitespace_and_case():
    assert exact_key("Hello   World\n") == exact_key("hello world") == exact_key("\tHELLO\nworld ")
    assert exact_key("hello world") != exact_key("hello, world")


def test_signature_shape_and_determinism():
    cfg = DedupConfig()
    text = "the quick brown fox jumps over the lazy dog " * 20
    sig = minhash_signature(text, cfg)
    assert sig.dtype == np.uint64 and sig.shape == (128,)
    assert np.array_equal(sig, minhash_signature(text, cfg))
    assert not np.array_equal(sig, minhash_signature(text, DedupConfig(seed=2)))
    assert minhash_signature(text, DedupConfig(num_perm=64)).shape == (64,)
    # no words: the empty signature (all max); fewer words than n: one shingle
    assert (minhash_signature("  ... !!", cfg) == np.iinfo(np.uint64).max).all()
    assert len(shingle_hashes("two words", 5)) == 1
    # shingles are ordered word n-grams, case-insensitive
    assert len(shingle_hashes("a b c d e f", 5)) == 2
    assert set(shingle_hashes("A B C D E", 5)) == set(shingle_hashes("a b c d e", 5))
    assert set(shingle_hashes("a b c d e", 5)) != set(shingle_hashes("e d c b a", 5))


def test_estimate_tracks_true_jaccard(labelled):
    by_id = {r["id"]: r["text"] for r in labelled}
    for row in labelled:
        base = by_id.get(f"c{row['cluster']}-0")
        if base is None or row["id"].endswith("-0"):
            continue
        est = estimated_jaccard(minhash_signature(base), minhash_signature(row["text"]))
        assert abs(est - row["jaccard_to_base"]) < 0.15  # 128 permutations: std <= 0.045


def test_exact_duplicates_keep_the_first():
    a = "An article about the history of coffee and the ports it travelled through."
    b = "A completely different text about the mountains of Scotland and their weather."
    dups = run([a, b, a.upper(), "  " + a + "\n", b], ids=["x1", "x2", "x3", "x4", "x5"])
    assert dups == {
        "x3": Dropped("exact_duplicate", "x1", "x1"),
        "x4": Dropped("exact_duplicate", "x1", "x1"),
        "x5": Dropped("exact_duplicate", "x2", "x2"),
    }


def test_near_duplicates_on_the_labelled_subset(labelled):
    threshold = DedupConfig().threshold
    dups = run([r["text"] for r in labelled], [r["id"] for r in labelled])
    cluster_of = {r["id"]: dups[r["id"]].cluster if r["id"] in dups else r["id"] for r in labelled}
    texts = {r["id"]: r["text"] for r in labelled}
    label = {r["id"]: r["cluster"] for r in labelled}
    predicted = {p for p in itertools.combinations(sorted(texts), 2) if cluster_of[p[0]] == cluster_of[p[1]]}
    same_label = [p for p in itertools.combinations(sorted(texts), 2) if label[p[0]] == label[p[1]]]
    truth = {p for p in same_label if true_jaccard(texts[p[0]], texts[p[1]]) >= threshold}
    assert len(truth) >= 10
    # every predicted pair belongs to one labelled cluster; pairs reach the threshold or chain to it
    assert all(label[a] == label[b] for a, b in predicted)
    precision = len(predicted & truth) / len(predicted)
    recall = len(predicted & truth) / len(truth)
    # measured 0.81 / 0.93 here (0.92 / 0.96 on the whole labelled set, bench/dedup_quality.py); the
    # "false" pairs are chains inside one labelled cluster (A~B, B~C, A-C just under the threshold)
    assert precision >= 0.75 and recall >= 0.85
    # the kept document of each cluster comes first in input order
    order = {r["id"]: i for i, r in enumerate(labelled)}
    for doc_id, dup in dups.items():
        assert order[dup.kept_id] < order[doc_id] and dup.kept_id not in dups


def test_clusters_are_transitive_and_exact_dups_follow_their_cluster():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    base = [rng.choice(words) for _ in range(600)]

    def edit(tokens, k):
        out = list(tokens)
        for i in rng.sample(range(len(out)), k):
            out[i] = rng.choice(words)
        return out

    a = base
    b = edit(a, 6)  # A~B and B~C, A and C further apart
    c = edit(b, 6)
    texts = [" ".join(t) for t in (a, b, c)]
    texts.append(texts[2].upper())  # an exact duplicate of C
    dups = run(texts)
    assert set(dups) == {"d1", "d2", "d3"}
    assert {d.kept_id for d in dups.values()} == {"d0"} and {d.cluster for d in dups.values()} == {"d0"}
    assert dups["d3"].reason == "exact_duplicate" and dups["d1"].reason == "near_duplicate"


def test_unrelated_texts_are_all_kept(labelled):
    firsts = {}
    for r in labelled:
        firsts.setdefault(r["cluster"], r["text"])
    assert run(list(firsts.values())) == {}


def test_large_near_identical_cluster_stays_fast():
    rng = random.Random(1)
    words = [f"w{i}" for i in range(2000)]
    base = [rng.choice(words) for _ in range(300)]
    texts = []
    for _ in range(1500):
        t = list(base)
        t[rng.randrange(len(t))] = rng.choice(words)  # one word changed: near-identical
        texts.append(" ".join(t))
    cfg = DedupConfig()
    sigs = np.stack([minhash_signature(t, cfg) for t in texts])
    start = time.perf_counter()
    ids = [f"d{i}" for i in range(len(texts))]
    dups = by_id(ids, find_duplicates(ids, [exact_key(t) for t in texts], sigs, cfg))
    assert time.perf_counter() - start < 5  # ~0.3 s: twins are not re-indexed, so queries stay short
    assert len(dups) == len(texts) - 1 and {d.kept_id for d in dups.values()} == {"d0"}


def test_inputs_must_line_up():
    cfg = DedupConfig()
    sig = minhash_signature("some words here", cfg)[None, :]
    with pytest.raises(ValueError, match="misaligned"):
        find_duplicates(["a", "b"], ["k", "k"], sig, cfg)
    with pytest.raises(ValueError, match="permutations"):
        find_duplicates(["a"], ["k"], sig[:, :64], cfg)
    assert run([]) == {}


def test_a_repeated_id_keeps_one_copy():
    """The same WARC given twice: every id twice. One copy of each stays, whatever the texts say."""
    cfg = DedupConfig()
    texts = ["first page about rivers and boats " * 5, "second page about mountains " * 5]
    texts += texts + ["a changed text under a repeated id " * 5]
    ids = ["a", "b", "a", "b", "a"]
    sigs = np.stack([minhash_signature(t, cfg) for t in texts])
    dups = find_duplicates(ids, [exact_key(t) for t in texts], sigs, cfg)
    assert sorted(dups) == [2, 3, 4]
    assert [(d.reason, d.kept) for _, d in sorted(dups.items())] == [
        ("duplicate_id", 0),
        ("duplicate_id", 1),
    ] + [("duplicate_id", 0)]
