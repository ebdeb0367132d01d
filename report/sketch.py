"""Bounded summaries of unbounded streams: the report's memory does not grow with the corpus.

- LogHistogram: fixed log-spaced bins; count, sum, min and max are exact for what was added, quantiles are
  read from the bins (to within a bin's width, ~26% at 10 bins per decade).
- TopCounter: exact counts until it holds `cap` keys; then it keeps the most common half each time it fills
  (Misra-Gries style), so the top keys stay right while rare keys' counts become lower bounds.
- ClusterSizes: the sizes of duplicate clusters, counted exactly for a uniform sample of clusters chosen by a
  hash of the cluster id; the sample halves whenever it holds more than `cap` clusters.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np


class LogHistogram:
    """Values >= 1 in bins of equal width on a log scale from 1 to 10**decades; zeros counted apart, larger
    values in the last bin."""

    def __init__(self, decades: int = 7, per_decade: int = 10) -> None:
        self.edges = np.logspace(0, decades, decades * per_decade + 1)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.zero = 0
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64)
        if not len(values):
            return
        self.count += len(values)
        self.total += int(values.sum())
        lo, hi = int(values.min()), int(values.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        positive = values[values > 0]
        self.zero += len(values) - len(positive)
        # searchsorted, not np.histogram: values past the last edge land in the last bin instead of vanishing
        idx = np.searchsorted(self.edges, positive, side="right") - 1
        np.add.at(self.counts, np.clip(idx, 0, len(self.counts) - 1), 1)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated on the log scale inside its bin (zeros count as 0)."""
        if not self.count:
            return None
        rank = q * self.count
        if rank <= self.zero:
            return 0.0
        cum = self.zero + np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank))
        i = min(i, len(self.counts) - 1)
        before = cum[i] - self.counts[i]
        frac = (rank - before) / self.counts[i] if self.counts[i] else 0.0
        lo, hi = np.log10(self.edges[i]), np.log10(self.edges[i + 1])
        value = float(10 ** (lo + frac * (hi - lo)))
        return min(max(value, self.min or 0), self.max or value)

    def to_json(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.counts)
        # only the bins from the first to the last non-empty one: the JSON stays small and the plot tight
        lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
        return {
            "count": self.count,
            "sum": self.total,
            "mean": self.total / self.count if self.count else None,
            "min": self.min,
            "max": self.max,
            "p10": _round(self.quantile(0.1)),
            "p50": _round(self.quantile(0.5)),
            "p90": _round(self.quantile(0.9)),
            "zero": self.zero,
            "edges": [_round(float(e)) for e in self.edges[lo : hi + 1]] if hi else [],
            "counts": self.counts[lo:hi].tolist(),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


class TopCounter:
    """Counts keys; holds at most `cap` of them (see the module docstring for what stays exact)."""

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self.counter: Counter[str] = Counter()
        self.pruned = False

    def update(self, keys: Iterable[str]) -> None:
        self.counter.update(keys)
        if len(self.counter) > self.cap:
            self.counter = Counter(dict(self.counter.most_common(self.cap // 2)))
            self.pruned = True

    def top(self, k: int) -> list[tuple[str, int]]:
        return self.counter.most_common(k)


class ClusterSizes:
    """Documents per cluster id, for the clusters whose id hashes below a threshold that halves as needed."""

    def __init__(self, cap: int = 200_000) -> None:
        self.cap = cap
        self.limit = 1 << 32  # keep a cluster when crc32(id) < limit: all of them at first
        self.members: Counter[str] = Counter()

    def wanted(self, cluster: str) -> bool:
        return self.limit == 1 << 32 or zlib.crc32(cluster.encode("utf-8")) < self.limit

    def update(self, clusters: Iterable[str]) -> None:
        self.members.update(c for c in clusters if self.wanted(c))
        while len(self.members) > self.cap:
            self.limit //= 2
            self.members = Counter({c: n for c, n in self.members.items() if self.wanted(c)})

    @property
    def fraction(self) -> float:
        """The share of all clusters sampled (1.0: every cluster)."""
        return self.limit / (1 << 32)

    def to_json(self) -> dict[str, Any]:
        sizes = Counter(self.members.values())
        return {
            "clusters_counted": len(self.members),
            "sampled_fraction": self.fraction,
            "documents_in_clusters": sum(self.members.values()),
            "largest": max(sizes) if sizes else 0,
            # size -> clusters of that size; at most ~sqrt(2 * documents) distinct sizes, so it stays small
            "sizes": {str(s): n for s, n in sorted(sizes.items())},
        }
