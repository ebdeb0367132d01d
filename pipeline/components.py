"""Connected components of the duplicate graph without any process holding all edges.

Alternating Large-Star / Small-Star (Kiveris et al., "Connected Components in MapReduce and Beyond",
SoCC 2014). Edges live in P partitions routed by `partition_of(src)`; one task per partition per round
calls `large_star` or `small_star` on its rows and routes every output row by its src again. A task's
rows hold the complete neighbourhood of each of its source nodes because every undirected edge is
stored in both directions. Rounds stop when `star_violations` is 0 in every partition: each component is
then a star around its smallest node, and `star_roots` gives (document, kept document) rows.

Neither operation ever increases the number of undirected edges (each edge {u, v}, u < v, becomes at
most one edge), so storage never grows; but a component's root collects the whole component as its
neighbourhood, so the task holding a root reads as many rows as that component has nodes.
"""

from __future__ import annotations

import time

import numpy as np

EDGE = np.dtype([("src", "<i8"), ("dst", "<i8")])  # one directed edge; the caller writes raw records


def make_edges(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """EDGE records from two equal-length integer arrays."""
    out = np.empty(len(src), dtype=EDGE)
    out["src"] = src
    out["dst"] = dst
    return out


def partition_of(nodes: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each node: splitmix64(node as uint64) % partitions.

    A real mix rather than `node % P`: document numbers are often assigned in blocks or strides, and a
    plain modulo would pile them into a few partitions. splitmix64: x += 0x9E3779B97F4A7C15, then
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9; x ^= x >> 27; x *= 0x94D049BB133111EB; x ^= x >> 31
    (all mod 2**64). The caller must route with this very function.
    """
    x = np.asarray(nodes, dtype=np.int64).astype(np.uint64)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(partitions)).astype(np.int64)


def _clean(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) sorted by src then dst, without self loops or repeated rows.

    Sorting by (src, dst) makes each source's neighbours one contiguous ascending run, so a group's
    smallest neighbour is its first row: no per-node loop is needed."""
    src = np.asarray(edges["src"], dtype=np.int64)
    dst = np.asarray(edges["dst"], dtype=np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    if len(src):
        new = np.empty(len(src), dtype=bool)
        new[0] = True
        new[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        src, dst = src[new], dst[new]
    return src, dst


def _groups(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in the sorted array src."""
    if not len(src):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    return starts, np.diff(np.r_[starts, len(src)])


def _both_ways(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Undirected edges {a, b} as deduplicated EDGE rows in both directions, sorted, no self loops."""
    src, dst = _clean(make_edges(np.concatenate([a, b]), np.concatenate([b, a])))
    return make_edges(src, dst)


def large_star(edges: np.ndarray) -> np.ndarray:
    """Large-Star at every source u: m = min(Γ(u) ∪ {u}); emit {v, m} for every neighbour v > u.

    Exactly the paper's operation: u keeps no edge of its own here. If u has a smaller neighbour w, the
    edge {w, u} is rewritten by w's task into {u, m(w)}, so u stays connected (the paper's Lemma 1)."""
    src, dst = _clean(edges)
    starts, counts = _groups(src)
    m = np.minimum(src[starts], dst[starts])  # dst ascends within a group: first row is the min neighbour
    m_row = np.repeat(m, counts)
    up = dst > src  # v > u >= m: never a self loop
    return _both_ways(dst[up], m_row[up])


def small_star(edges: np.ndarray) -> np.ndarray:
    """Small-Star at every source u: N = {v ∈ Γ(u) : v < u}, m = min(N ∪ {u});
    emit {v, m} for every v ∈ N ∪ {u} other than m. Nodes with an empty N emit nothing (their larger
    neighbours' own tasks re-emit those edges), exactly as in the paper."""
    src, dst = _clean(edges)
    down = dst < src  # self loops are gone, so v <= u is v < u
    src, dst = src[down], dst[down]  # still sorted by (src, dst)
    starts, counts = _groups(src)
    m = dst[starts]  # min(N) < u whenever N is non-empty
    m_row = np.repeat(m, counts)
    other = dst != m_row
    return _both_ways(np.concatenate([dst[other], src[starts]]), np.concatenate([m_row[other], m]))


def _star_state(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per source node: (node, its neighbour count, its smaller-neighbour count, its smallest neighbour)."""
    src, dst = _clean(edges)
    starts, counts = _groups(src)
    if not len(src):
        return src, counts, counts, src
    smaller = np.add.reduceat((dst < src).astype(np.int64), starts)
    return src[starts], counts, smaller, dst[starts]


def star_violations(edges: np.ndarray) -> int:
    """Source nodes that are neither a root (no smaller neighbour) nor a leaf (one neighbour, smaller).

    Local is enough: if every node passes, each edge joins a root to a leaf and each leaf has one root,
    so every component is a star around its smallest node. 0 in every partition means converged."""
    _, counts, smaller, _ = _star_state(edges)
    return int(np.count_nonzero((smaller > 0) & (counts > 1)))


def star_roots(edges: np.ndarray) -> np.ndarray:
    """(leaf, root) EDGE rows for this task's source nodes that are leaves of a converged star forest.

    Roots (the kept documents) do not appear, nor do documents with no duplicate: absent means "kept".
    Raises ValueError if these rows are not converged, since a leaf's root would then be wrong."""
    nodes, counts, smaller, first = _star_state(edges)
    if np.any((smaller > 0) & (counts > 1)):
        raise ValueError("star_roots needs a converged star forest (star_violations == 0)")
    leaf = smaller > 0
    return make_edges(nodes[leaf], first[leaf])


def split_partitions(edges: np.ndarray, partitions: int) -> list[np.ndarray]:
    """Rows of edges grouped by partition_of(src), as the caller's partition files hold them."""
    part = partition_of(edges["src"], partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.cumsum(np.bincount(part, minlength=partitions))[:-1]
    return np.split(edges[order], bounds)


def merge_in_rounds(
    edges: np.ndarray, partitions: int, max_rounds: int = 200, stats: list[dict] | None = None
) -> tuple[np.ndarray, int]:
    """Reference driver: every round runs one task per partition and reroutes the output by src.

    edges may hold each undirected edge in one direction only (both are stored first). Rounds alternate
    large, small, large, ... until no partition has a star violation. Returns the (leaf, root) rows of
    all partitions, sorted by leaf, and the number of rounds. If `stats` is a list, one dict per round
    is appended: op, rows routed (cross-task duplicates included, as the caller would write them),
    distinct directed edges, the largest task input and output, and seconds."""
    parts = split_partitions(_both_ways(edges["src"], edges["dst"]), partitions)
    rounds = 0
    while sum(star_violations(p) for p in parts):
        if rounds >= max_rounds:
            raise RuntimeError(f"no star forest after {max_rounds} rounds")
        op = large_star if rounds % 2 == 0 else small_star
        t0 = time.perf_counter()
        outs = [op(p) for p in parts]
        seconds = time.perf_counter() - t0
        largest_in = max(len(p) for p in parts)
        parts = split_partitions(np.concatenate(outs), partitions)
        rounds += 1
        if stats is not None:
            stats.append(
                {
                    "round": rounds,
                    "op": op.__name__,
                    "rows": sum(len(p) for p in parts),
                    "edges": sum(len(_clean(p)[0]) for p in parts),
                    "max_task_in": largest_in,
                    "max_task_out": max(len(o) for o in outs),
                    "seconds": seconds,
                }
            )
    roots = np.concatenate([star_roots(p) for p in parts]) if parts else np.zeros(0, dtype=EDGE)
    return roots[np.argsort(roots["src"], kind="stable")], rounds
