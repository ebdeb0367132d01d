"""The document contract between data stages: one schema, read and written here only.

A document folder holds Parquet files with the columns of DOCUMENT_SCHEMA. Dropped documents go to
`excluded/` beside them with the same columns plus `reason`, so nothing silently disappears. Which files
make up a folder is said by its stage index (pipeline/stage.py), never by a glob.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stats import Stats
from pipeline.storage import atomic_write, filesystem


def _struct(**fields: pa.DataType) -> pa.StructType:
    return pa.struct([pa.field(name, tp) for name, tp in fields.items()])


_STR, _BOOL, _I32, _I64, _F32 = pa.string(), pa.bool_(), pa.int32(), pa.int64(), pa.float32()

# What the filter rules judged (pipeline/quality.py names each score; a drop reason "step.score" names the
# column metadata.filter.step.score it was judged on), typed so a user can query and re-threshold them.
FILTER_TYPE = _struct(
    unicode_repaired=_BOOL,  # ftfy changed the text
    gopher_repetition=_struct(
        dup_para_frac=_F32,
        dup_para_char_frac=_F32,
        dup_line_frac=_F32,
        dup_line_char_frac=_F32,
        **{f"top_{n}_gram_char_frac": _F32 for n in (2, 3, 4)},
        **{f"dup_{n}_gram_char_frac": _F32 for n in range(5, 11)},
    ),
    gopher_quality=_struct(
        words=_I32,
        mean_word_length=_F32,
        hash_ratio=_F32,
        ellipsis_ratio=_F32,
        bullet_lines_ratio=_F32,
        ellipsis_lines_ratio=_F32,
        alpha_words_ratio=_F32,
        stop_words=_I32,
    ),
    c4=_struct(lines_removed=_I32, sentences=_I32, lorem_ipsum=_BOOL, curly_bracket=_BOOL),
    fineweb_quality=_struct(
        line_punct_ratio=_F32, short_line_ratio=_F32, char_dup_ratio=_F32, newline_ratio=_F32
    ),
    badwords=_struct(word=_STR, language=_STR),
    decontamination=_struct(ngrams=_I32, file=_STR),
    skipped=pa.list_(_STR),  # "rule:why" for each rule not applied to this document's language
)
METADATA_TYPE = _struct(
    # extract: the record and how its text was obtained
    content_type=_STR,
    http_status=_I32,
    html_bytes=_I64,
    text_bytes=_I64,
    text_chars=_I64,
    charset=_STR,
    warc_offset=_I64,
    warc_language=_STR,  # Common Crawl's guess (WET records)
    warc_truncated=_STR,
    time_limit_s=_F32,
    record_type=_STR,
    content_length=_I64,
    # filter
    language=_STR,
    language_score=_F32,
    filter=FILTER_TYPE,
    pii=_struct(email=_I32, ip=_I32, phone=_I32),  # replacements made, by type
    # dedup
    dedup=_struct(cluster=_STR, duplicate_of=_STR),
)
METADATA_KEYS = frozenset(f.name for f in METADATA_TYPE)
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # WARC-Record-ID of the response record: stable
        pa.field("url", pa.string()),
        pa.field("date", pa.string()),  # WARC-Date, ISO 8601
        pa.field("text", pa.string()),
        pa.field("warc_file", pa.string()),
        pa.field("metadata", METADATA_TYPE),  # what each stage measured; absent values are null
    ]
)
EXCLUDED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("reason", pa.string(), nullable=False))


def _sparse(value: Any) -> Any:
    """A struct read back as a dict without its null fields: a stage sees only what was recorded."""
    if isinstance(value, dict):
        return {k: _sparse(v) for k, v in value.items() if v is not None}
    return value


@dataclass
class Document:
    id: str
    text: str
    url: str = ""
    date: str = ""
    warc_file: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        unknown = self.metadata.keys() - METADATA_KEYS
        if unknown:  # a field the schema lacks would be dropped silently by pyarrow
            raise ValueError(f"metadata keys not in METADATA_TYPE: {sorted(unknown)}")
        return {
            "id": self.id,
            "url": self.url,
            "date": self.date,
            "text": self.text,
            "warc_file": self.warc_file,
            "metadata": self.metadata,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        return cls(
            id=row["id"],
            text=row["text"] or "",
            url=row.get("url") or "",
            date=row.get("date") or "",
            warc_file=row.get("warc_file") or "",
            metadata=_sparse(row.get("metadata") or {}),
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


def text_bytes(metadata: pq.FileMetaData) -> int:
    """About how many UTF-8 bytes of text a part file holds, from its footer alone: the text column's size
    before compression (the texts plus 4 bytes of length each)."""
    col = metadata.schema.to_arrow_schema().get_field_index("text")
    return sum(
        metadata.row_group(g).column(col).total_uncompressed_size for g in range(metadata.num_row_groups)
    )
