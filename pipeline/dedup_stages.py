"""Dedup across a whole corpus as waves of Ray tasks over partitioned files: no process holds the corpus.

Each wave is a resumable stage of its own, in OUTPUT/_work:

  signatures   one task per part: sketch-KEY.bin (one byte per MinHash bin per document, row by row) and
               bands-KEY.bin: (bucket, row, kind) per LSH band, exact-text key and id, in P partitions
  buckets      one task per partition: documents sharing a bucket become candidate pairs, which must
               agree in sketch (read row by row); the verified edges go out partitioned by node, and
               "exact"/"same id" flags partitioned by part
  components, roots, centers, names
               one task per partition each: clusters, and in each the documents kept and what every other
               is a duplicate of (pipeline/dedup_clusters.py)
  dedup        one task per part (the output folder): kept and excluded documents, with their cluster

A document is numbered part << 32 | row, parts in input order (the `--against` corpus first), so the
smallest number of a cluster is its first document in input order, and an older corpus always wins.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from importlib.metadata import version
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline import dedup_clusters as clusters
from pipeline import exchange, storage
from pipeline.components import make_edges, partition_of
from pipeline.config import UsageError
from pipeline.dedup import DedupConfig, agree, hash_strings, sketch
from pipeline.dedup_clusters import Part, doc_numbers, partition, partitions, sketch_rows
from pipeline.documents import read_documents
from pipeline.stage import Stage, StageResult, TaskInput, TaskRun, run_stage, with_upstream
from pipeline.stage_folder import StageIndex, read_stage

VERSION = f"3 pyarrow={version('pyarrow')}"
BATCH = 512  # documents sketched at once
PAIR_BLOCK = 32_768  # candidate pairs verified at once: at most 64k sketches (128 MB) in memory
MAX_ROUNDS = 100  # Large/Small-Star needs O(log^2 n); a 100,000-document path took 27
NEAR, EXACT, SAME_ID = 0, 1, 2  # bucket kinds; also the flag bits of EXACT and SAME_ID
BAND = np.dtype([("bucket", "<u8"), ("row", "<u4"), ("kind", "u1")])
FLAG = np.dtype([("doc", "<i8"), ("flag", "u1")])
REASONS = {SAME_ID: "duplicate_id", EXACT: "exact_duplicate", NEAR: "near_duplicate"}


def default_partitions(docs: int) -> int:
    """sqrt(docs / 1000): 5 for 20k documents, 1,732 for 3 billion (1.7M documents a partition)."""
    return max(1, min(4096, math.ceil(math.sqrt(docs / 1000))))


# --- signatures -------------------------------------------------------------------------------------------


def _signatures(run: TaskRun) -> None:
    cfg: DedupConfig = run.config
    bands, rows = [], 0
    fs, path = storage.filesystem(run.input)
    with storage.atomic_write(run.output(f"sketch-{run.key}.bin")) as out, fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH, columns=["id", "text"]):
            sk = sketch(batch.column("text"), cfg)  # the Arrow column: no Python string per document
            out.write(sk.bytes_.tobytes())
            n = batch.num_rows
            row = np.arange(rows, rows + n, dtype=np.uint32)
            near = np.flatnonzero(sk.has_words)
            recs = np.empty(2 * n + len(near) * cfg.bands, dtype=BAND)
            recs["bucket"][:n] = sk.exact
            recs["bucket"][n : 2 * n] = hash_strings(batch.column("id"), cfg.seed)
            recs["bucket"][2 * n :] = sk.bands[near].ravel()
            recs["row"] = np.concatenate([row, row, np.repeat(row[near], cfg.bands)])
            recs["kind"] = np.repeat([EXACT, SAME_ID, NEAR], [n, n, len(near) * cfg.bands])
            bands.append(recs)
            rows += n
    recs = np.concatenate(bands) if bands else np.zeros(0, BAND)
    P = partitions(run)
    exchange.write_sections(
        run.output(f"bands-{run.key}.bin"), recs, partition_of(recs["bucket"].view(np.int64), P), P
    )
    run.stats.add("docs_in", rows)
    run.result["docs"] = rows


# --- buckets ----------------------------------------------------------------------------------------------


def candidate_pairs(doc: np.ndarray, bucket: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, b, kind) with a > b for documents sharing a bucket: every member with its bucket's smallest
    document and, in LSH buckets, with the member before it. Linear in a bucket's size, however large;
    a pair one band misses this way, another band finds."""
    order = np.lexsort((doc, bucket, kind))
    doc, bucket, kind = doc[order], bucket[order], kind[order]
    first_of_group = np.ones(len(doc), dtype=bool)
    first_of_group[1:] = (bucket[1:] != bucket[:-1]) | (kind[1:] != kind[:-1])
    smallest = doc[np.maximum.accumulate(np.where(first_of_group, np.arange(len(doc)), 0))]
    member = ~first_of_group
    chained = member.copy()
    chained[1:] &= ~first_of_group[:-1] & (kind[1:] == NEAR)  # the one before is no bucket head either
    chained[0] = False
    a = np.concatenate([doc[member], doc[chained]])
    b = np.concatenate([smallest[member], doc[np.flatnonzero(chained) - 1]])
    k = np.concatenate([kind[member], kind[chained]])
    keep = a != b
    return a[keep], b[keep], k[keep]


def _similar(parts: list[Part], a: np.ndarray, b: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Whether each pair's sketches agree at the threshold. Distinct pairs are verified a block at a time,
    reading the sketches of that block's documents only, so memory stays bounded however many there are."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    pairs, pair_of = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    out = np.zeros(len(pairs), dtype=bool)
    for at in range(0, len(pairs), PAIR_BLOCK):
        nodes, node_of = np.unique(pairs[at : at + PAIR_BLOCK], return_inverse=True)
        sketches = sketch_rows(parts, nodes, cfg.bins)
        node_of = node_of.reshape(-1, 2)
        out[at : at + PAIR_BLOCK] = agree(sketches, node_of[:, 0], node_of[:, 1], cfg.threshold)
    return out[pair_of.ravel()]


def _buckets(run: TaskRun) -> None:
    cfg: DedupConfig = run.config
    parts: list[Part] = run.context
    p = partition(run)
    pieces = exchange.read_sections([storage.join(q.signatures, f"bands-{q.key}.bin") for q in parts], p)
    doc = np.concatenate(
        [doc_numbers(q.number, piece["row"]) for q, piece in zip(parts, pieces, strict=True)]
    )
    recs = np.concatenate(pieces) if pieces else np.zeros(0, BAND)
    a, b, kind = candidate_pairs(doc, recs["bucket"], recs["kind"])
    # the same record given twice goes whatever its text; exact and near pairs must agree in sketch too
    same_id = kind == SAME_ID
    linked = same_id.copy()
    linked[~same_id] = _similar(parts, a[~same_id], b[~same_id], cfg)
    run.stats.add("candidate_pairs", int((kind == NEAR).sum()))
    run.stats.add("verified_pairs", int((linked & (kind == NEAR)).sum()))

    flag_as = np.where(same_id, SAME_ID, EXACT)[same_id | (linked & (kind == EXACT))]
    flags = np.empty(len(flag_as), dtype=FLAG)
    flags["doc"], flags["flag"] = a[same_id | (linked & (kind == EXACT))], flag_as
    edges = np.unique(
        make_edges(np.concatenate([a[linked], b[linked]]), np.concatenate([b[linked], a[linked]]))
    )
    P = partitions(run)
    exchange.write_sections(run.output(f"edges-{run.key}.bin"), edges, partition_of(edges["src"], P), P)
    exchange.write_sections(run.output(f"flags-{run.key}.bin"), flags, (flags["doc"] >> 32) % P, P)


# --- the deduplicated documents ---------------------------------------------------------------------------


def _of_part(urls: list[str], run: TaskRun, part: int, dtype: np.dtype | None = None) -> np.ndarray:
    """This part's rows of a wave partitioned by part number."""
    rows = exchange.read_section(urls, part % partitions(run), dtype)
    return rows[(rows["doc"] >> 32) == part]


def _write(run: TaskRun) -> None:
    names_urls, flag_urls = run.context
    part = int(run.identity["part"])
    named = _of_part(names_urls, run, part)
    flags = _of_part(flag_urls, run, part, FLAG)
    flag_of: dict[int, int] = {}
    for d, f in zip((flags["doc"] & 0xFFFFFFFF).tolist(), flags["flag"].tolist(), strict=True):
        flag_of[d] = max(flag_of.get(d, NEAR), f)
    label = {
        int(d & 0xFFFFFFFF): (int(d) == int(c), r.decode("utf-8"), c_id.decode("utf-8"))
        for d, c, r, c_id in zip(
            named["doc"], named["center"], named["root_id"], named["center_id"], strict=True
        )
    }
    with run.documents() as sink:
        for row, doc in enumerate(read_documents(run.input)):
            sink.stats.add("docs_in")
            got = label.get(row)
            if got is None:
                sink.keep(doc)
                continue
            is_center, root_id, center_id = got
            reason = flag_of.get(row, NEAR)
            if is_center and reason != SAME_ID:  # the first of its cluster, or no near duplicate of any kept
                doc.metadata["dedup"] = {"cluster": root_id}
                sink.keep(doc)
            else:  # the same record twice goes even if its text changed: then for the cluster's first
                kept = root_id if is_center else center_id
                doc.metadata["dedup"] = {"cluster": root_id, "duplicate_of": kept}
                sink.drop(doc, REASONS[reason])


# --- the stage as a user runs it --------------------------------------------------------------------------


def _signature_shape(cfg: DedupConfig) -> DedupConfig:
    # only what shapes a sketch or a band file: a new threshold re-verifies, it does not re-sketch
    return dataclasses.replace(
        DedupConfig(), **{f: getattr(cfg, f) for f in ("ngram", "bins", "bands", "rows", "seed")}
    )


class _Unfinished(Exception):
    def __init__(self, result: StageResult) -> None:
        self.result = result


@dataclasses.dataclass
class _Waves:
    """Runs the waves of one dedup into WORK: one task per partition, each identified by its upstream wave's
    fingerprint, its partition and the partition count."""

    cfg: DedupConfig
    partitions: int
    work: str
    overwrite: bool

    def run(self, name: str, task: Any, context: Any, upstream: tuple[str, str], folder: str) -> StageResult:
        stage = Stage(f"dedup-{name}", VERSION, task, self.cfg, outputs=("*.bin",), context=context)
        identity = {"upstream": upstream[1], "partitions": self.partitions}
        inputs = [
            TaskInput(f"p{p:05d}", upstream[0], {**identity, "partition": p}) for p in range(self.partitions)
        ]
        done = run_stage(stage, inputs, storage.join(self.work, folder), overwrite=self.overwrite)
        if not done.complete:
            raise _Unfinished(done)
        return done


def _total_docs(index: StageIndex) -> int:
    return sum(json.loads(row["stats"]).get("counters", {}).get("docs_out", 0) for row in index.rows)


def _violations(result: StageResult) -> int:
    return sum(int(json.loads(row["result"]).get("violations", 0)) for row in result.records.values())


def _unfinished(result: StageResult, output: str) -> StageResult:
    return dataclasses.replace(result, stage="dedup", output=output)


def _files(result: StageResult, prefix: str) -> list[str]:
    return [storage.join(result.output, f"{prefix}-{key}.bin") for key in sorted(result.records)]


def _upstream(result: StageResult) -> tuple[str, str]:
    return result.output, result.fingerprint


def dedup(
    input_dir: str, output: str, cfg: DedupConfig, overwrite: bool = False, against: str | None = None
) -> StageResult:
    """Drop documents of INPUT that duplicate an earlier one (or one of AGAINST, which is only read)."""
    started = time.perf_counter()
    docs = read_stage(input_dir)
    old = read_stage(against) if against else None
    if old is not None and old.root == docs.root:
        raise UsageError("--against names the input folder itself")
    P = cfg.partitions or default_partitions(_total_docs(docs) + (_total_docs(old) if old else 0))
    work = storage.join(storage.normalize(output), "_work")
    waves = _Waves(cfg, P, work, overwrite)

    parts: list[Part] = []
    fingerprints = []
    new_inputs = docs.document_inputs()
    corpora = [("against", old.document_inputs())] if old else []
    for name, inputs in [*corpora, ("signatures", new_inputs)]:
        folder = storage.join(work, name)
        done = run_stage(
            Stage("dedup-signatures", VERSION, _signatures, _signature_shape(cfg), outputs=("*.bin",)),
            with_upstream(inputs, partitions=P),
            folder,
            overwrite=overwrite,
        )
        if not done.complete:
            return _unfinished(done, output)
        fingerprints.append(done.fingerprint)
        parts += [Part(len(parts) + i, t.key, t.url, folder) for i, t in enumerate(inputs)]
    new_parts = parts[len(parts) - len(new_inputs) :]

    try:
        buckets = waves.run("buckets", _buckets, parts, (work, "+".join(fingerprints)), "buckets")
        edges, upstream = _files(buckets, "edges"), _upstream(buckets)
        for r in range(1, MAX_ROUNDS + 1):
            step = "large" if r % 2 else "small"
            done = waves.run(
                "components", clusters.star_round, (step, edges), upstream, f"components/{r:03d}-{step}"
            )
            if _violations(done) == 0:
                break  # this round's input was already a forest of stars
            edges, upstream = _files(done, "edges"), _upstream(done)
        else:
            raise RuntimeError(f"components did not converge in {MAX_ROUNDS} rounds")
        roots = waves.run("roots", clusters.roots, edges, upstream, "roots")
        centers = waves.run(
            "centers", clusters.centers, (parts, _files(roots, "links")), _upstream(roots), "centers"
        )
        names = waves.run(
            "names", clusters.names, (parts, _files(centers, "labels")), _upstream(centers), "names"
        )
    except _Unfinished as e:
        return _unfinished(e.result, output)
    writer = Stage("dedup", VERSION, _write, cfg, context=(_files(names, "names"), _files(buckets, "flags")))
    inputs = [
        TaskInput(
            p.key, p.docs, {**t.identity, "part": p.number, "partitions": P, "clusters": names.fingerprint}
        )
        for p, t in zip(new_parts, new_inputs, strict=True)
    ]
    return run_stage(writer, inputs, output, overwrite=overwrite, started=started)
