"""The document contract between data stages: one schema, read and written here only.

A document folder holds Parquet files with the columns of DOCUMENT_SCHEMA. Dropped documents go to
`excluded/` beside them with the same columns plus `reason`, so nothing silently disappears. Which files
make up a folder is said by its stage index (pipeline/stage.py), never by a glob.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stats import Stats
from pipeline.storage import atomic_write, filesystem

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


def write_table(table: pa.Table, url: str) -> None:
    """One whole Parquet file, committed atomically (see storage.atomic_write)."""
    with atomic_write(url) as f:
        pq.write_table(table, f, compression="zstd")


class _ParquetStream:
    """Rows appended in batches, flushed as row groups: memory stays bounded however long the task runs."""

    def __init__(self, url: str, schema: pa.Schema, max_rows: int, max_bytes: int) -> None:
        self.url, self.schema, self.max_rows, self.max_bytes = url, schema, max_rows, max_bytes
        self.rows: list[dict[str, Any]] = []
        self.bytes = 0
        self._file_cm = atomic_write(url)
        self._file = self._file_cm.__enter__()
        self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.bytes += len(row["text"]) + 256
        if len(self.rows) >= self.max_rows or self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows, self.bytes = [], 0

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self.flush()
            self._writer.close()
            self._file_cm.__exit__(None, None, None)
        else:  # nothing is committed: the temporary file is removed, the upload aborted
            with contextlib.suppress(Exception):
                self._writer.close()  # or its finaliser would write to the closed file later
            self._file_cm.__exit__(type(error), error, error.__traceback__)


class DocumentSink:
    """What one task of a document stage keeps and drops, streamed to two Parquet files.

    Kept documents go to `part_url`, dropped ones with their reason to `excluded_url`: nothing a stage
    reads disappears without a row saying why. Both files are committed together when the sink closes
    without an error, and neither is when it closes with one.
    """

    def __init__(
        self,
        part_url: str,
        excluded_url: str,
        stats: Stats | None = None,
        *,
        row_group_docs: int = 2000,
        row_group_bytes: int = 32 << 20,
    ) -> None:
        self.stats = stats if stats is not None else Stats()
        self._kept = _ParquetStream(part_url, DOCUMENT_SCHEMA, row_group_docs, row_group_bytes)
        self._excluded = _ParquetStream(excluded_url, EXCLUDED_SCHEMA, row_group_docs, row_group_bytes)

    def keep(self, doc: Document) -> None:
        self.stats.add("docs_out")
        self._kept.append(doc.to_row())

    def drop(self, doc: Document, reason: str) -> None:
        self.stats.drop(reason)
        self._excluded.append({**doc.to_row(), "reason": reason})

    def __enter__(self) -> DocumentSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._kept.close(exc)
        self._excluded.close(exc)


def read_documents(url: str, columns: list[str] | None = None) -> Iterator[Document]:
    """Yield the documents of one Parquet file, batch by batch (a file need not fit in memory)."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                yield Document.from_row(row)
