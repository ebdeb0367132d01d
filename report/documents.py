"""What the documents of one stage folder look like, read in a bounded number of documents.

Exact (from the stage's stats/merged.json, not from here): documents in, kept and dropped per reason.

Sampled here, when the folder holds more than `budget` kept (or dropped) documents: whole part files are
read in an order that spreads any prefix of them evenly over the folder (file 0, n/2, n/4, 3n/4, ...), until
`budget` documents: languages, character lengths, top domains and bytes. Part files follow the inputs (one
per WARC file), and a crawl's WARC files are each a slice of the same crawl, so files spread this way are a
fair sample at a bounded cost. Example texts per drop reason are the first 3 met in that order (a rare
reason may have none in the sample).

Duplicate clusters (the dedup stage) are the one full pass: one small column (`metadata.dedup.cluster`) of
every file, since a cluster's documents are spread over all of them; clusters are hash-sampled past 200,000
(see report.sketch.ClusterSizes).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.stage_folder import read_index
from report.sketch import ClusterSizes, LogHistogram, TopCounter

EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 300
TOP_DOMAINS = 20
BATCH_DOCS = 1024


@dataclass(frozen=True)
class DocumentFiles:
    kept: list[str]  # part-*.parquet
    excluded: list[str]  # excluded/part-*.parquet


def document_files(root: str) -> DocumentFiles | None:
    """The Parquet files of a document stage folder, as its index names them (None: not a document stage).

    The index, not a listing, says which files are the output: a killed attempt's files are not.
    """
    names: list[str] = []
    for row in read_index(root).values():
        names.extend(json.loads(row["outputs"]))
    if not names:  # a folder from before the index, or one copied without it: its files as they are
        names = list(storage.list_tree(root))
    kept = sorted(n for n in names if "/" not in n and n.startswith("part-") and n.endswith(".parquet"))
    excluded = sorted(n for n in names if n.startswith("excluded/part-") and n.endswith(".parquet"))
    if not kept and not excluded:
        return None
    return DocumentFiles([storage.join(root, n) for n in kept], [storage.join(root, n) for n in excluded])


def spread_order(n: int) -> list[int]:
    """0..n-1 in bit-reversed order: every prefix is spread evenly over the range."""
    bits = max(1, (n - 1).bit_length())
    order = (int(f"{j:0{bits}b}"[::-1], 2) for j in range(1 << bits))
    return [i for i in order if i < n]


class _Reader:
    """Record batches of `files` in spread order, stopping after `budget` rows (None: all); it counts the
    rows and files it read."""

    def __init__(self, files: list[str], columns: list[str], budget: int | None) -> None:
        self.files, self.columns, self.budget = files, columns, budget
        self.rows = self.opened = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for i in spread_order(len(self.files)):
            if self.rows == self.budget:
                return
            self.opened += 1
            fs, path = storage.filesystem(self.files[i])
            with fs.open(path, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_DOCS, columns=self.columns):
                    if self.budget is not None:
                        batch = batch.slice(0, self.budget - self.rows)
                    self.rows += batch.num_rows
                    yield batch
                    if self.rows == self.budget:
                        break


@functools.cache
def _tld_extract() -> Any:
    """One for the process: building its suffix trie takes ~0.1 s."""
    from tldextract import TLDExtract

    return TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot, no network


class _Domains:
    """Registered domain of a URL (bbc.co.uk, not www.bbc.co.uk), from tldextract's bundled suffix list."""

    def __init__(self) -> None:
        self.extract = _tld_extract()
        self.by_host: dict[str, str] = {}  # hosts repeat: each is looked up once (bounded below)

    def __call__(self, url: str | None) -> str:
        if not url:
            return "(no url)"
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return "(bad url)"
        domain = self.by_host.get(host)
        if domain is None:
            domain = self.extract(host).top_domain_under_public_suffix or host or "(no host)"
            if len(self.by_host) < 100_000:
                self.by_host[host] = domain
        return domain


def _languages(batch: pa.RecordBatch) -> Counter[str]:
    lang = pc.fill_null(pc.struct_field(batch.column("metadata"), "language"), "(none)")
    counts = pc.value_counts(lang).to_pylist()
    return Counter({c["values"]: c["counts"] for c in counts})


def _sample_note(read: int, total: int | None, files_read: int, files: int) -> dict[str, Any]:
    return {
        "docs_read": read,
        "docs_total": total,
        "files_read": files_read,
        "files_total": files,
        "sampled": files_read < files or (total is not None and read < total),
    }


def scan_kept(files: list[str], budget: int | None, total: int | None) -> dict[str, Any]:
    """Languages, character lengths, top domains and UTF-8 bytes of the kept documents (sampled)."""
    chars, domains, languages = LogHistogram(), TopCounter(), Counter()
    domain_of = _Domains()
    text_bytes = 0
    reader = _Reader(files, ["url", "text", "metadata.language"], budget)
    for batch in reader:
        text = batch.column("text")
        chars.add(pc.fill_null(pc.utf8_length(text), 0).to_numpy())
        text_bytes += int(pc.sum(pc.binary_length(text)).as_py() or 0)
        languages.update(_languages(batch))
        domains.update(domain_of(u) for u in batch.column("url").to_pylist())
    return {
        "sample": _sample_note(reader.rows, total, reader.opened, len(files)),
        "languages": dict(languages.most_common()),
        "chars": chars.to_json(),
        "text_bytes": text_bytes,
        "top_domains": [[d, n] for d, n in domains.top(TOP_DOMAINS)],
        "distinct_domains": len(domains.counter),
        "domains_pruned": domains.pruned,
    }


def scan_excluded(files: list[str], budget: int | None, total: int | None) -> dict[str, Any]:
    """Languages and character lengths of dropped documents, and the first examples of each drop reason."""
    chars, languages = LogHistogram(), Counter()
    examples: dict[str, list[dict[str, str]]] = {}
    reader = _Reader(files, ["id", "url", "text", "reason", "metadata.language"], budget)
    for batch in reader:
        text = batch.column("text")
        chars.add(pc.fill_null(pc.utf8_length(text), 0).to_numpy())
        languages.update(_languages(batch))
        reasons = batch.column("reason").to_pylist()
        for row, reason in enumerate(reasons):
            got = examples.setdefault(reason, [])
            if len(got) < EXAMPLES_PER_REASON:
                got.append(_example(batch, row))
    return {
        "sample": _sample_note(reader.rows, total, reader.opened, len(files)),
        "languages": dict(languages.most_common()),
        "chars": chars.to_json(),
        "examples": examples,
    }


def _example(batch: pa.RecordBatch, row: int) -> dict[str, str]:
    text = batch.column("text")[row].as_py() or ""
    cut = text[:EXAMPLE_CHARS]
    return {
        "id": batch.column("id")[row].as_py() or "",
        "url": batch.column("url")[row].as_py() or "",
        "text": cut + ("…" if len(text) > len(cut) else ""),
        "chars": str(len(text)),
    }


def _clusters_of(url: str) -> list[str]:
    fs, path = storage.filesystem(url)
    with fs.open(path, "rb") as f:
        table = pq.ParquetFile(f).read(columns=["metadata.dedup.cluster"])
    cluster = pc.struct_field(pc.struct_field(table.column("metadata"), "dedup"), "cluster")
    return pc.drop_null(cluster).to_pylist()


def scan_clusters(files: DocumentFiles, threads: int = 8) -> dict[str, Any]:
    """Cluster sizes over kept and dropped documents of a dedup folder: every file, one column each."""
    sizes = ClusterSizes()
    every = files.kept + files.excluded
    # threads: an object store answers each read in tens of milliseconds, so reads overlap
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for clusters in pool.map(_clusters_of, every):
            sizes.update(clusters)
    out = sizes.to_json()
    out["files_read"] = len(every)
    return out
