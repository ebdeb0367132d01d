"""Large-Star / Small-Star components against a plain union-find."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.components import (
    EDGE,
    large_star,
    make_edges,
    merge_in_rounds,
    partition_of,
    small_star,
    split_partitions,
    star_roots,
    star_violations,
)


def union_find_roots(src: np.ndarray, dst: np.ndarray) -> dict[int, int]:
    """Every node on a non-loop edge -> smallest node of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        if a == b:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smaller root wins, so each root is its component's min
    return {x: find(x) for x in list(parent)}


def check(edges: np.ndarray, partitions: int, max_rounds: int = 200) -> int:
    stats: list[dict] = []
    roots, rounds = merge_in_rounds(edges, partitions, max_rounds=max_rounds, stats=stats)
    assert roots.dtype == EDGE
    expected = union_find_roots(edges["src"], edges["dst"])
    leaves = roots["src"].tolist()
    assert len(leaves) == len(set(leaves)), "a node maps to its root more than once"
    got = dict(pairs(roots))
    want = {x: r for x, r in expected.items() if x != r}  # roots and duplicate-free nodes are absent
    assert got == want
    # neither operation may grow the graph: each undirected edge becomes at most one edge
    first = 2 * len(union_find_edges(edges))
    sizes = [first] + [s["edges"] for s in stats]
    assert all(b <= a for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    return rounds


def pairs(edges: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(edges["src"].tolist(), edges["dst"].tolist(), strict=True))


def union_find_edges(edges: np.ndarray) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs(edges) if a != b}


def random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct int64 ids, negatives included, in random order."""
    ids = np.unique(rng.integers(-(2**62), 2**62, size=2 * n + 10))
    return rng.permutation(ids)[:n]


@pytest.mark.parametrize("partitions", [1, 3, 8])
@pytest.mark.parametrize("n,m", [(10, 6), (200, 150), (3000, 2500), (3000, 6000)])
def test_random_sparse_graphs(n: int, m: int, partitions: int):
    rng = np.random.default_rng(n * 31 + m + partitions)
    ids = random_ids(rng, n)
    edges = make_edges(ids[rng.integers(0, n, m)], ids[rng.integers(0, n, m)])
    check(edges, partitions)


def test_shuffled_path_needs_few_rounds():
    rng = np.random.default_rng(5)
    ids = random_ids(rng, 5000)  # the path visits ids in random order: no help from the numbering
    rounds = check(make_edges(ids[:-1], ids[1:]), 8)
    print(f"path of 5000 shuffled nodes: {rounds} rounds")
    assert rounds <= 40


def test_big_star_and_many_pairs():
    rng = np.random.default_rng(7)
    ids = random_ids(rng, 4001)
    centre = ids[2000]  # not the smallest: the component's min is one of its leaves
    star = make_edges(np.full(2000, centre), ids[:2000])
    pairs = make_edges(ids[2001::2], ids[2002::2])
    check(np.concatenate([star, pairs]), 3)


def test_duplicates_self_loops_and_reversed_rows():
    edges = make_edges(
        np.array([5, 3, 3, 3, 9, 9, 7, 8, 4, 4], dtype=np.int64),
        np.array([3, 5, 5, 3, 9, 7, 9, 7, 4, -2], dtype=np.int64),
    )
    roots, _ = merge_in_rounds(edges, 3)
    assert dict(pairs(roots)) == {5: 3, 8: 7, 9: 7, 4: -2}
    check(edges, 1)


def test_empty_input():
    empty = np.zeros(0, dtype=EDGE)
    roots, rounds = merge_in_rounds(empty, 4)
    assert len(roots) == 0 and rounds == 0 and roots.dtype == EDGE
    for op in (large_star, small_star, star_roots):
        assert len(op(empty)) == 0 and op(empty).dtype == EDGE
    assert star_violations(empty) == 0


def test_operations_emit_both_directions_once():
    rng = np.random.default_rng(3)
    ids = random_ids(rng, 100)
    edges = make_edges(ids[rng.integers(0, 100, 300)], ids[rng.integers(0, 100, 300)])
    edges = np.concatenate([edges, edges[::-1]])
    for op in (large_star, small_star):
        out = op(edges)
        rows = set(pairs(out))
        assert len(rows) == len(out)
        assert all(a != b and (b, a) in rows for a, b in rows)


def test_star_forest_is_a_fixed_point():
    leaves, centres = np.array([4, 2, 9, 11, 12]), np.array([1, 1, 1, 10, 10])
    both = make_edges(np.r_[leaves, centres], np.r_[centres, leaves])
    assert star_violations(both) == 0
    for op in (large_star, small_star):
        assert set(pairs(op(both))) == set(pairs(both))
    assert dict(pairs(star_roots(both))) == {
        2: 1,
        4: 1,
        9: 1,
        11: 10,
        12: 10,
    }
    path = make_edges(np.array([1, 2, 2, 3], dtype=np.int64), np.array([2, 1, 3, 2], dtype=np.int64))
    assert star_violations(path) == 1  # node 2 has a smaller and a larger neighbour
    with pytest.raises(ValueError):
        star_roots(path)


def test_partition_of_spreads_strided_ids():
    ids = np.arange(0, 8 * 100_000, 8, dtype=np.int64)  # node % 8 would put all of these in partition 0
    counts = np.bincount(partition_of(ids, 8), minlength=8)
    assert counts.min() > 0.9 * len(ids) / 8
    assert np.array_equal(partition_of(ids, 8), partition_of(ids.copy(), 8))  # deterministic
    parts = split_partitions(make_edges(ids, ids[::-1]), 8)
    assert all(np.all(partition_of(p["src"], 8) == i) for i, p in enumerate(parts))
