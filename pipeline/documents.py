"""The document contract between data stages: one schema, read and written here only.

A document folder holds Parquet files with the columns of DOCUMENT_SCHEMA. Dropped documents go to
`excluded/` beside them with the same columns plus `reason`, so nothing silently disappears.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # WARC-Record-ID of the response record: stable
        pa.field("url", pa.string()),
        pa.field("date", pa.string()),  # WARC-Date, ISO 8601
        pa.field("text", pa.string()),
        pa.field("warc_file", pa.string()),
        # JSON object: language, language_score, filter scores, dedup cluster... Stages add keys; a JSON
        # string keeps the schema fixed while each stage records what it measured.
        pa.field("metadata", pa.string()),
    ]
)
EXCLUDED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("reason", pa.string(), nullable=False))


@dataclass
class Document:
    id: str
    text: str
    url: str = ""
    date: str = ""
    warc_file: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "date": self.date,
            "text": self.text,
            "warc_file": self.warc_file,
            "metadata": json.dumps(self.metadata, sort_keys=True, ensure_ascii=False),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        return cls(
            id=row["id"],
            text=row["text"] or "",
            url=row.get("url") or "",
            date=row.get("date") or "",
            warc_file=row.get("warc_file") or "",
            metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        )


def documents_table(docs: Iterable[Document]) -> pa.Table:
    return pa.Table.from_pylist([d.to_row() for d in docs], schema=DOCUMENT_SCHEMA)


def excluded_table(dropped: Iterable[tuple[Document, str]]) -> pa.Table:
    rows = [{**d.to_row(), "reason": reason} for d, reason in dropped]
    return pa.Table.from_pylist(rows, schema=EXCLUDED_SCHEMA)


def write_table(table: pa.Table, path: str) -> None:
    """Write a Parquet file atomically (temp name, then rename) so a crashed task leaves no half file."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    fs.makedirs(fs_path.rsplit("/", 1)[0], exist_ok=True)
    tmp = fs_path + ".tmp"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    fs.mv(tmp, fs_path)


def read_documents(path: str) -> Iterator[Document]:
    """Yield the documents of one Parquet file, batch by batch (a file need not fit in memory)."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    with fs.open(fs_path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield Document.from_row(row)


def list_document_files(folder: str) -> list[str]:
    """The Parquet document files of a stage output folder, sorted, not descending into excluded/."""
    fs, fs_path = fsspec.core.url_to_fs(folder)
    if not fs.isdir(fs_path):
        raise FileNotFoundError(f"no such document folder: {folder}")
    files = sorted(p for p in fs.ls(fs_path, detail=False) if p.endswith(".parquet"))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol == "file" else f"{protocol}://{p}" for p in files]
