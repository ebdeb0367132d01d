"""From verified duplicate edges to each document's kept document, one partition per task.

  components  Large-Star / Small-Star rounds until each cluster is a star around its smallest document
              (pipeline/components.py); edges stay partitioned by node
  roots       (member, smallest) rows, re-partitioned by the smallest: each task then holds whole clusters
  centers     each cluster is walked in input order against its sketches: a member that is a near duplicate
              of a document kept so far goes (to the most similar one), any other is kept. A cluster is
              transitive (A~B~C) but C need not be a near duplicate of A: it stays, and so does anything
              only it is a near duplicate of. Every dropped document is a near duplicate of its kept one.
  names       the ids of the kept documents and of each cluster's first, read from their parts

A document is numbered part << 32 | row, parts in input order, so a cluster's smallest number is its first
document in input order: its id names the cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

from pipeline import exchange, storage
from pipeline.components import EDGE, large_star, partition_of, small_star, star_roots, star_violations
from pipeline.dedup import DedupConfig, estimated_jaccard, exact_jaccard, pair_estimates, shingle_hashes
from pipeline.stage import TaskRun

LINK = np.dtype([("doc", "<i8"), ("root", "<i8")])
LABEL = np.dtype([("doc", "<i8"), ("root", "<i8"), ("center", "<i8")])
MEMBERS_AT_ONCE = 65_536  # cluster members whose sketches a centers task holds at once (128 MB)


@dataclasses.dataclass(frozen=True)
class Part:
    number: int
    key: str
    docs: str  # the part's documents
    signatures: str  # the folder holding its sketch and band files


def doc_numbers(part: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(part) << np.int64(32)) | rows.astype(np.int64)


def partition(run: TaskRun) -> int:
    return int(run.identity["partition"])


def partitions(run: TaskRun) -> int:
    # in the input's identity, not the config: a count derived from the corpus size follows the corpus,
    # so a grown corpus is a changed input (redone) rather than a changed config (refused)
    return int(run.identity["partitions"])


def by_part(docs: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(part number, positions in `docs`, rows in the part) for each part the document numbers fall in."""
    part_of = docs >> 32
    for number in np.unique(part_of):
        at = np.flatnonzero(part_of == number)
        yield int(number), at, docs[at] & 0xFFFFFFFF


def sketch_rows(parts: list[Part], docs: np.ndarray, bins: int) -> np.ndarray:
    """Sketches of the given document numbers, (len, bins) uint8, read part by part."""
    out = np.empty((len(docs), bins), dtype=np.uint8)
    for number, at, rows in by_part(docs):
        part = parts[number]
        out[at] = exchange.read_rows(storage.join(part.signatures, f"sketch-{part.key}.bin"), rows, bins)
    return out


def star_round(run: TaskRun) -> None:
    step, sources = run.context
    edges = exchange.read_section(sources, partition(run), EDGE)
    run.result["violations"] = star_violations(edges)
    out = large_star(edges) if step == "large" else small_star(edges)
    P = partitions(run)
    exchange.write_sections(run.output(f"edges-{run.key}.bin"), out, partition_of(out["src"], P), P)


def roots(run: TaskRun) -> None:
    edges = exchange.read_section(run.context, partition(run), EDGE)
    leaves = star_roots(edges)  # (leaf, root); a root is a source with only larger neighbours
    heads = np.unique(edges["src"][~np.isin(edges["src"], leaves["src"])])
    links = np.empty(len(leaves) + len(heads), dtype=LINK)
    links["doc"] = np.concatenate([leaves["src"], heads])
    links["root"] = np.concatenate([leaves["dst"], heads])
    P = partitions(run)
    exchange.write_sections(run.output(f"links-{run.key}.bin"), links, partition_of(links["root"], P), P)


class ExactShingles:
    """Exact shingle sets of single documents, read from their parts: only the few documents a sketch
    cannot place are read, each part opened once and each row group it needs read once per prefetch."""

    def __init__(self, parts: list[Part], cfg: DedupConfig) -> None:
        self.parts, self.cfg = parts, cfg
        self.sets: dict[int, np.ndarray] = {}
        self.checks = 0

    def jaccard(self, a: int, b: int) -> float:
        self.checks += 1
        for doc in (a, b):
            if doc not in self.sets:  # not foreseen by the first walk: rare
                self.prefetch(np.array([doc], dtype=np.int64))
        return exact_jaccard(self.sets[a], self.sets[b])

    def prefetch(self, docs: np.ndarray) -> None:
        """Read the shingle sets of these documents ahead (a walk then rarely reads on its own)."""
        for part, _, rows in by_part(np.unique(docs)):
            fs, path = storage.filesystem(self.parts[part].docs)
            with fs.open(path, "rb") as f:
                file = pq.ParquetFile(f)
                ends = np.cumsum([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)])
                groups = np.searchsorted(ends, rows, side="right")
                for group in np.unique(groups):
                    texts = file.read_row_group(int(group), columns=["text"]).column(0)
                    first = int(ends[group - 1]) if group else 0
                    wanted = rows[groups == group]
                    values, starts, _ = shingle_hashes(
                        texts.take(wanted - first), self.cfg.ngram, self.cfg.seed
                    )
                    for k, row in enumerate(wanted.tolist()):
                        self.sets[part << 32 | row] = np.unique(values[starts[k] : starts[k + 1]])


class _Undecided:
    """Stands in for ExactShingles in a first walk: trusts the sketch and notes which documents an exact
    check would read."""

    def __init__(self) -> None:
        self.docs: list[int] = []

    def jaccard(self, a: int, b: int) -> float:
        self.docs += [a, b]
        return 1.0


def assign_centers(
    root: np.ndarray,
    doc: np.ndarray,
    sketches: np.ndarray,
    threshold: float,
    exact: ExactShingles | _Undecided | None = None,
    margin: float = 0.0,
) -> np.ndarray:
    """The kept document (center) of each member, for members sorted by (root, doc), roots first.

    Pairs (most clusters) in one vectorised step; a larger cluster member by member against the centers
    chosen so far, so the cost is members x centers: a cluster of a million near-identical pages has one.
    An estimate less than `margin` above the threshold is checked on the exact shingle sets (`exact`).
    """

    def near(est: float, i: int, k: int) -> bool:
        if est < threshold:
            return False
        return (
            exact is None or est >= threshold + margin or exact.jaccard(int(doc[i]), int(doc[k])) >= threshold
        )

    center = doc.copy()
    first = np.ones(len(doc), dtype=bool)
    first[1:] = root[1:] != root[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(doc)))
    pairs = starts[sizes == 2]
    for p, est in zip(pairs.tolist(), pair_estimates(sketches, pairs, pairs + 1).tolist(), strict=True):
        if near(est, p + 1, p):
            center[p + 1] = doc[p]
    for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
        kept = [start]
        for i in range(start + 1, start + size):
            est = estimated_jaccard(sketches[kept], sketches[i][None, :])
            order = np.argsort(-est, kind="stable")  # the most similar kept document that truly is one
            match = next(
                (kept[k] for k in order[est[order] >= threshold] if near(float(est[k]), i, kept[k])), None
            )
            if match is None:
                kept.append(i)
            else:
                center[i] = doc[match]
    return center


def _whole_clusters(root: np.ndarray, size: int) -> list[slice]:
    """Slices of about `size` rows of root-sorted members that never split a cluster (a larger cluster is
    a slice of its own)."""
    starts = np.flatnonzero(np.concatenate([[True], root[1:] != root[:-1]]))
    cuts, at = [], 0
    while at < len(root):
        later = starts[starts >= at + size]  # the first cluster to start past the block's size ends it
        end = int(later[0]) if len(later) else len(root)
        cuts.append(slice(at, end))
        at = end
    return cuts


def centers(run: TaskRun) -> None:
    cfg: DedupConfig = run.config
    parts, sources = run.context
    links = exchange.read_section(sources, partition(run), LINK)
    links = links[np.lexsort((links["doc"], links["root"]))]
    center = np.empty(len(links), dtype=np.int64)
    exact = ExactShingles(parts, cfg) if cfg.exact_margin > 0 else None
    for rows in _whole_clusters(links["root"], MEMBERS_AT_ONCE):  # sketches of a block of clusters at a time
        sketches = sketch_rows(parts, links["doc"][rows], cfg.bins)
        if exact is not None:  # read the texts an exact check will want in one pass per part, not one by one
            undecided = _Undecided()
            assign_centers(
                links["root"][rows], links["doc"][rows], sketches, cfg.threshold, undecided, cfg.exact_margin
            )
            exact.prefetch(np.array(undecided.docs, dtype=np.int64))
        center[rows] = assign_centers(
            links["root"][rows], links["doc"][rows], sketches, cfg.threshold, exact, cfg.exact_margin
        )
    labels = np.empty(len(links), dtype=LABEL)
    labels["doc"], labels["root"], labels["center"] = links["doc"], links["root"], center
    run.stats.add("clustered", int((links["doc"] != links["root"]).sum()))
    run.stats.add("exact_checks", exact.checks if exact else 0)
    run.stats.add("kept_in_cluster", int(((center == links["doc"]) & (links["doc"] != links["root"])).sum()))
    P = partitions(run)
    exchange.write_sections(run.output(f"labels-{run.key}.bin"), labels, (labels["root"] >> 32) % P, P)


def _ids(parts: list[Part], docs: np.ndarray) -> list[bytes]:
    """The UTF-8 ids of the given documents, each part's id column read once."""
    out: list[bytes] = [b""] * len(docs)
    for number, at, rows in by_part(docs):
        fs, path = storage.filesystem(parts[number].docs)
        ids = pq.read_table(path, columns=["id"], filesystem=fs).column("id").to_pylist()
        for i, row in zip(at.tolist(), rows.tolist(), strict=True):
            out[i] = ids[row].encode("utf-8")
    return out


def names(run: TaskRun) -> None:
    parts, sources = run.context
    labels = exchange.read_section(sources, partition(run), LABEL)
    root_ids, center_ids = _ids(parts, labels["root"]), _ids(parts, labels["center"])
    width = max((len(n) for n in root_ids + center_ids), default=1) or 1
    out = np.empty(len(labels), dtype=[*LABEL.descr, ("root_id", f"S{width}"), ("center_id", f"S{width}")])
    for name in LABEL.names:
        out[name] = labels[name]
    out["root_id"], out["center_id"] = root_ids, center_ids
    P = partitions(run)
    exchange.write_sections(run.output(f"names-{run.key}.bin"), out, (out["doc"] >> 32) % P, P)
