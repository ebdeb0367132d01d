"""tokenmill dedup: drop exact and near (MinHash) duplicates across all input files.

Three steps, each resumable: per-file signatures (Ray tasks), one global clustering (a Ray task: the LSH
index must see every document), then per-file writing of kept and excluded documents (Ray tasks).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from jobs.common import TaskDocuments, dataclass_from_table, run_stage_cli
from pipeline.dedup import DedupConfig, exact_key, find_duplicates, minhash_signature
from pipeline.documents import list_document_files, read_documents, write_table
from pipeline.executor import StageLayout, StageResult, exists, init_ray, run_stage
from pipeline.stats import Stats


def signature_file(i: int, path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    cfg = DedupConfig(**config)
    stats = Stats()
    ids, keys, sigs = [], [], []
    for doc in read_documents(path):
        ids.append(doc.id)
        keys.append(exact_key(doc.text))
        sigs.append(minhash_signature(doc.text, cfg))
    stats.add("docs_in", len(ids))
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "exact_key": pa.array(keys, pa.string()),
            "signature": pa.array([s.tolist() for s in sigs], pa.list_(pa.uint64())),
        }
    )
    write_table(table, layout.part(i))
    return stats


def cluster(signature_files: list[str], duplicates_path: str, config: dict[str, Any]) -> int:
    """Find every duplicate across all files (input order decides who is kept); write them; return count."""
    table = pa.concat_tables([pq.read_table(p) for p in signature_files])
    cfg = DedupConfig(**config)
    ids = table.column("id").to_pylist()
    sigs = table.column("signature").combine_chunks().values.to_numpy().reshape(len(ids), cfg.num_perm)
    dups = find_duplicates(ids, table.column("exact_key").to_pylist(), sigs, cfg)
    rows = [
        {"id": i, "reason": d.reason, "kept_id": d.kept_id, "cluster": d.cluster} for i, d in dups.items()
    ]
    schema = pa.schema([(name, pa.string()) for name in ("id", "reason", "kept_id", "cluster")])
    write_table(pa.Table.from_pylist(rows, schema=schema), duplicates_path)
    return len(rows)


def write_file(i: int, path: str, layout: StageLayout, config: dict[str, Any]) -> Stats:
    dups = {r["id"]: r for r in pq.read_table(config["duplicates"]).to_pylist()}
    kept_clusters = {r["kept_id"]: r["cluster"] for r in dups.values()}
    out = TaskDocuments()
    for doc in read_documents(path):
        out.stats.add("docs_in")
        if doc.id in dups:
            d = dups[doc.id]
            doc.metadata["dedup"] = {"cluster": d["cluster"], "duplicate_of": d["kept_id"]}
            out.drop(doc, d["reason"])
        else:
            if doc.id in kept_clusters:
                doc.metadata["dedup"] = {"cluster": kept_clusters[doc.id]}
            out.keep(doc)
    return out.write(layout, i)


def run(input_dir: str, output: str, cfg: DedupConfig | None = None) -> StageResult:
    started = time.perf_counter()
    config = dataclasses.asdict(cfg or DedupConfig())
    files = list_document_files(input_dir)
    work = f"{output.rstrip('/')}/_work"
    signatures = run_stage("dedup-signatures", signature_file, files, f"{work}/signatures", config)
    if signatures.failed:
        return dataclasses.replace(signatures, stage="dedup", output=output)
    duplicates = f"{work}/duplicates.parquet"
    if not exists(duplicates):
        init_ray()
        parts = [StageLayout(f"{work}/signatures").part(i) for i in range(len(files))]
        ray.get(ray.remote(num_cpus=1)(cluster).remote(parts, duplicates, config))
    return run_stage(
        "dedup", write_file, files, output, {**config, "duplicates": duplicates}, started=started
    )


def config_from_table(table: dict[str, Any]) -> DedupConfig:
    return dataclass_from_table(DedupConfig, table, "dedup")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenmill dedup",
        description="Drop exact duplicates (normalised text hash) and near duplicates (MinHash LSH over word "
        "n-grams, datasketch) across all input files; the first document of each cluster in input order is "
        "kept. Dropped documents go to OUTPUT/excluded/ with the id of the document they duplicate.",
    )
    p.add_argument("input", metavar="DIR", help="folder of Parquet documents (the output of filter)")
    p.add_argument("--output", "-o", required=True, help="folder for the documents kept")
    p.add_argument(
        "--threshold", type=float, default=None, help="estimated Jaccard above which two are duplicates"
    )
    p.add_argument("--num-perm", type=int, default=None, help="MinHash permutations")
    p.add_argument("--ngram", type=int, default=None, help="words per shingle")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def _run(args: argparse.Namespace) -> StageResult:
        table = {k: v for k in ("threshold", "num_perm", "ngram") if (v := getattr(args, k)) is not None}
        return run(args.input, args.output, config_from_table(table))

    return run_stage_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
