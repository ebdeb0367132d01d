"""What each stage's work costs per document, on real pages, with reading the documents as the anchor.

Extracts the WCXB dev WARCs once (extract_warc into a DocumentSink), then times, per document and on one
core, what each later stage's task does to it: the filter chain, the dedup signature (MinHash + exact key),
tokenizing. It also prints the bytes each document leaves behind for the corpus-wide dedup step, which is
what decides how far one process can go.

    python bench/stage_costs.py
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dedup import DedupConfig, sketch  # noqa: E402
from pipeline.dedup_stages import BAND  # noqa: E402
from pipeline.documents import DocumentSink, read_documents  # noqa: E402
from pipeline.extract import ExtractConfig, extract_warc  # noqa: E402
from pipeline.filters import FilterChain, FilterConfig, first_reason  # noqa: E402
from pipeline.stats import Stats  # noqa: E402
from tokenizer.bpe import encode_documents, train_bpe  # noqa: E402
from tokenizer.shards import token_dtype  # noqa: E402

DEV = sorted(Path("/work/shared/data/warc").glob("cclike-wcxb-dev-*.warc.gz"))


def per_doc(label: str, docs: list, fn, anchor: float | None = None) -> float:
    start = time.process_time()
    for d in docs:
        fn(d)
    ms = (time.process_time() - start) * 1000 / len(docs)
    ratio = f"  {ms / anchor:7.1f}x the anchor" if anchor else ""
    print(f"{label:<44} {ms:8.3f} ms/doc{ratio}")
    return ms


def main() -> None:
    if not DEV:
        sys.exit("needs /work/shared/data/warc/cclike-wcxb-dev-*.warc.gz")
    with tempfile.TemporaryDirectory() as tmp:
        stats = Stats()
        start = time.process_time()
        with DocumentSink(f"{tmp}/part.parquet", f"{tmp}/excluded.parquet", stats) as sink:
            for warc in DEV:
                extract_warc(str(warc), sink, ExtractConfig())
        extract_ms = (time.process_time() - start) * 1000 / stats.counters["docs_in"]
        docs = list(read_documents(f"{tmp}/part.parquet"))
        chars = sum(len(d.text) for d in docs) / len(docs)
        print(
            f"{len(docs)} kept documents of {stats.counters['docs_in']} records, {chars:.0f} characters each"
        )
        start = time.process_time()
        list(read_documents(f"{tmp}/part.parquet"))
        anchor = (time.process_time() - start) * 1000 / len(docs)
        print(f"{'anchor: read a document from Parquet':<44} {anchor:8.3f} ms/doc")
        label = "extract (trafilatura, per WARC record)"
        print(f"{label:<44} {extract_ms:8.3f} ms/doc  {extract_ms / anchor:7.1f}x the anchor")
        chain = FilterChain(FilterConfig())

        def judge(d) -> None:
            d = dataclasses.replace(d, metadata={})
            if first_reason(chain.judge(d)) is None:
                chain.redact(d)

        per_doc("filter (FineWeb's sequence + PII)", docs, judge, anchor)
        cfg = DedupConfig()

        def signature(d) -> None:
            sketch([d.text], cfg)  # one at a time here; the stage sketches 512 at once

        per_doc(f"dedup sketch ({cfg.bins} bins + bands + exact key)", docs, signature, anchor)
        tok = train_bpe((d.text for d in docs[:300]), 8192)
        dtype = token_dtype(8192)

        def encode(d) -> None:
            list(encode_documents(tok, [d.text], dtype))

        per_doc("tokenize (BPE 8192, one document at a time)", docs, encode, anchor)
    sketch_bytes = cfg.bins  # one byte a bin, read back row by row only for candidate pairs
    band_bytes = (cfg.bands + 2) * BAND.itemsize  # LSH bands, exact key, id: the shuffled records
    print(
        f"dedup work files per document: {sketch_bytes} B of sketch + {band_bytes} B of band records; "
        f"at 3e9 documents {3e9 * sketch_bytes / 1e12:.1f} TB + {3e9 * band_bytes / 1e12:.2f} TB on disk, "
        "no process holding more than its partition"
    )


if __name__ == "__main__":
    main()
