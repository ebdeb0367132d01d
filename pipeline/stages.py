"""The document stages as Stage objects: what each task does with its input, and what identifies it.

extract: one task per WARC file. filter: one task per extract part. dedup: three steps, each a stage of its
own so each resumes: per-part signatures, one global clustering, per-part writing of kept and dropped.
Each stage's version names the libraries whose upgrade changes its output, so an upgrade is a change a
rerun notices rather than output silently mixed from two versions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import extract as extraction
from pipeline import storage
from pipeline.config import UsageError
from pipeline.dedup import DedupConfig, exact_key, find_duplicates, minhash_signature
from pipeline.documents import read_documents
from pipeline.extract import ExtractConfig
from pipeline.filters import FilterConfig, build_filters, first_failure
from pipeline.stage import (
    Stage,
    StageResult,
    TaskInput,
    TaskRun,
    input_key,
    run_stage,
    with_upstream,
)
from pipeline.stage_folder import read_stage

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz")


def _versions(*packages: str) -> str:
    return " ".join(f"{p}={version(p)}" for p in packages)


# --- extract ----------------------------------------------------------------------------------------------


def warc_inputs(items: Sequence[str]) -> list[TaskInput]:
    """Files, folders (their WARC files) and globs, local or remote, each once, identified by one listing."""
    found: dict[str, storage.FileInfo] = {}
    for item in items:
        try:
            infos = storage.list_inputs(item, WARC_SUFFIXES)
        except FileNotFoundError:
            raise UsageError(f"no such input: {item}") from None
        if not infos:
            raise UsageError(f"no input files in {item} (looked for {', '.join(WARC_SUFFIXES)})")
        found.update((fi.url, fi) for fi in infos)
    return [TaskInput(input_key(url), url, fi.identity()) for url, fi in sorted(found.items())]


def _extract(run: TaskRun) -> None:
    with run.documents() as sink:
        extraction.extract_warc(run.input, sink, run.config)


def extract_stage(cfg: ExtractConfig) -> Stage:
    return Stage("extract", f"2 {_versions('trafilatura', 'fastwarc', 'resiliparse')}", _extract, cfg)


# --- filter -----------------------------------------------------------------------------------------------


def _filter(run: TaskRun) -> None:
    filters = build_filters(run.config)
    with run.documents() as sink:
        for doc in read_documents(run.input):
            sink.stats.add("docs_in")
            reason = first_failure(filters, doc)
            if reason is None:
                sink.keep(doc)
            else:
                sink.drop(doc, reason)


def filter_stage(cfg: FilterConfig) -> Stage:
    return Stage("filter", f"1 {_versions('datatrove', 'py3langid')}", _filter, cfg)


# --- dedup ------------------------------------------------------------------------------------------------
# signatures/part-KEY.parquet: (row, id, exact_key, signature) of every document of one input part
# clusters/clusters.parquet: (key, row, id, reason, kept_id, cluster) of every document in a cluster of 2+
# the dedup folder itself: the documents of each part, kept or excluded by what clusters.parquet says

SIGNATURE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("exact_key", pa.string()),
        ("signature", pa.list_(pa.uint64())),
    ]
)
CLUSTER_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("row", pa.int64()),
        ("id", pa.string()),
        ("reason", pa.string()),  # null for the document kept for its cluster
        ("kept_id", pa.string()),
        ("cluster", pa.string()),
    ]
)
DEDUP_VERSION = f"1 {_versions('datasketch')}"


def _signatures(run: TaskRun) -> None:
    rows = []
    for row, doc in enumerate(read_documents(run.input)):
        sig = minhash_signature(doc.text, run.config)
        rows.append({"row": row, "id": doc.id, "exact_key": exact_key(doc.text), "signature": sig.tolist()})
    run.stats.add("docs_in", len(rows))
    with storage.atomic_write(run.output(f"part-{run.key}.parquet")) as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=SIGNATURE_SCHEMA), f, compression="zstd")


def _clusters(run: TaskRun) -> None:
    """All signatures in one process for now: the dedup-at-scale issue (6) partitions this step."""
    index = read_stage(run.input, expect="dedup-signatures")
    keys, rows, ids, exact, sigs = [], [], [], [], []
    for task in index.rows:
        path = storage.join(index.root, f"part-{task['key']}.parquet")
        table = pq.read_table(pa.BufferReader(storage.read_bytes(path)))
        keys += [task["key"]] * table.num_rows
        rows += table.column("row").to_pylist()
        ids += table.column("id").to_pylist()
        exact += table.column("exact_key").to_pylist()
        flat = pc.list_flatten(table.column("signature")).to_numpy()  # one file at a time: int32 offsets hold
        sigs.append(flat.astype(np.uint64, copy=False).reshape(table.num_rows, -1))
    cfg: DedupConfig = run.config
    matrix = np.concatenate(sigs) if sigs else np.zeros((0, cfg.num_perm), dtype=np.uint64)
    dups = find_duplicates(ids, exact, matrix, cfg)
    heads = {d.kept for d in dups.values()}
    out = [
        {"key": keys[i], "row": rows[i], "id": ids[i], "reason": None, "kept_id": ids[i], "cluster": ids[i]}
        for i in sorted(heads)
    ]
    out += [
        {
            "key": keys[i],
            "row": rows[i],
            "id": ids[i],
            "reason": d.reason,
            "kept_id": ids[d.kept],
            "cluster": d.cluster,
        }
        for i, d in sorted(dups.items())
    ]
    out.sort(key=lambda r: (r["key"], r["row"]))  # each writing task reads its own key's row groups only
    run.stats.add("docs_in", len(ids))
    run.stats.add("duplicates", len(dups))
    with storage.atomic_write(run.output("clusters.parquet")) as f:
        table = pa.Table.from_pylist(out, schema=CLUSTER_SCHEMA)
        pq.write_table(table, f, compression="zstd", row_group_size=100_000)


def _write_deduplicated(run: TaskRun) -> None:
    fs, path = storage.filesystem(run.context)  # the clusters file
    mine = pq.read_table(path, filesystem=fs, filters=[("key", "=", run.key)]).to_pylist()
    by_row = {r["row"]: r for r in mine}
    with run.documents() as sink:
        for row, doc in enumerate(read_documents(run.input)):
            sink.stats.add("docs_in")
            c = by_row.get(row)
            if c is None:
                sink.keep(doc)
            elif c["reason"] is None:
                doc.metadata["dedup"] = {"cluster": c["cluster"]}
                sink.keep(doc)
            else:
                doc.metadata["dedup"] = {"cluster": c["cluster"], "duplicate_of": c["kept_id"]}
                sink.drop(doc, c["reason"])


def dedup_signatures_stage(cfg: DedupConfig) -> Stage:
    # only what shapes a signature is in its recipe: a new threshold reclusters, it does not rehash
    shape = dataclasses.replace(DedupConfig(), num_perm=cfg.num_perm, ngram=cfg.ngram, seed=cfg.seed)
    return Stage("dedup-signatures", DEDUP_VERSION, _signatures, shape, outputs=("part-*.parquet",))


def dedup_clusters_stage(cfg: DedupConfig) -> Stage:
    return Stage("dedup-clusters", DEDUP_VERSION, _clusters, cfg, outputs=("clusters.parquet",))


def dedup_write_stage(cfg: DedupConfig, clusters_url: str) -> Stage:
    return Stage("dedup", DEDUP_VERSION, _write_deduplicated, cfg, context=clusters_url)


# --- the stages as a user runs them -----------------------------------------------------------------------


def extract(inputs: Sequence[str], output: str, cfg: ExtractConfig, overwrite: bool = False) -> StageResult:
    return run_stage(extract_stage(cfg), warc_inputs(inputs), output, overwrite=overwrite)


def filter_documents(input_dir: str, output: str, cfg: FilterConfig, overwrite: bool = False) -> StageResult:
    docs = read_stage(input_dir)
    return run_stage(filter_stage(cfg), docs.document_inputs(), output, overwrite=overwrite)


def dedup(input_dir: str, output: str, cfg: DedupConfig, overwrite: bool = False) -> StageResult:
    """Three resumable steps; the work folders live in OUTPUT/_work (work files, not output)."""
    started = time.perf_counter()
    docs = read_stage(input_dir)
    work = storage.join(storage.normalize(output), "_work")
    inputs = docs.document_inputs()
    signatures = run_stage(
        dedup_signatures_stage(cfg), inputs, storage.join(work, "signatures"), overwrite=overwrite
    )
    if not signatures.complete:
        return dataclasses.replace(signatures, stage="dedup", output=output)
    signature_index = read_stage(signatures.output)
    clusters = run_stage(
        dedup_clusters_stage(cfg),
        [TaskInput("clusters", signature_index.root, {"upstream": signature_index.fingerprint})],
        storage.join(work, "clusters"),
        overwrite=overwrite,
    )
    if not clusters.complete:
        return dataclasses.replace(clusters, stage="dedup", output=output)
    clusters_url = storage.join(clusters.output, "clusters.parquet")
    return run_stage(
        dedup_write_stage(cfg, clusters_url),
        with_upstream(inputs, clusters=clusters.fingerprint),
        output,
        overwrite=overwrite,
        started=started,
    )
