"""Extraction throughput: pages/s of extract_warc against a plain FastWARC + trafilatura loop, same pages.

Ours is the whole task: WARC reading with its checks and resync, block digests, HTTP and charset decoding,
the per-page time limit, and a DocumentSink writing kept and dropped documents to Parquet in a temporary
folder. The anchor is the least a pipeline can do: FastWARC's ArchiveIterator with parse_http, and
trafilatura.extract with the same options on every 200 text/html response, nothing written. Both run in
this process pinned to one CPU, taking turns file by file (the order swapped each time) so the load of a
shared machine hits both alike; the ratio is the figure to read (goal: at least 0.95).

    .venv/bin/python bench/extract_throughput.py                # the 4 WCXB dev WARCs, 1,358 pages
    .venv/bin/python bench/extract_throughput.py --files 1 --rounds 2
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import trafilatura
from fastwarc.warc import ArchiveIterator, WarcRecordType

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.documents import DocumentSink  # noqa: E402
from pipeline.extract import HTML_TYPES, ExtractConfig, extract_warc, trafilatura_options  # noqa: E402
from pipeline.stats import Stats  # noqa: E402

DATA = "/work/shared/data"


def plain_loop(path: str, cfg: ExtractConfig) -> int:
    """The anchor: FastWARC + trafilatura.extract on each 200 HTML response; returns the pages extracted."""
    pages = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            if rec.http_headers.status_code != 200 or rec.http_content_type not in HTML_TYPES:
                continue
            url = rec.headers.get("WARC-Target-URI")
            trafilatura.extract(rec.reader.read(), url=url, **trafilatura_options(cfg))
            pages += 1
    return pages


def ours(path: str, cfg: ExtractConfig, out: str) -> Stats:
    stats = Stats()
    with DocumentSink(f"{out}/part.parquet", f"{out}/excluded.parquet", stats) as sink:
        extract_warc(path, sink, cfg)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warcs", default=f"{DATA}/warc/cclike-wcxb-dev-000*.warc.gz")
    ap.add_argument("--files", type=int, default=None, help="the first N files only")
    ap.add_argument("--rounds", type=int, default=1, help="times each file is run by each side")
    args = ap.parse_args()
    paths = sorted(glob.glob(args.warcs))[: args.files]
    if not paths:
        sys.exit(f"skipped: no file matches {args.warcs} (the shared data folder is absent)")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, for both sides
    cfg = ExtractConfig()
    trafilatura.extract("<html><body><p>" + "warm up the imports " * 20 + "</p></body></html>")

    seconds = {"ours": 0.0, "anchor": 0.0}
    pages, kept, dropped = 0, 0, Stats()
    with tempfile.TemporaryDirectory() as tmp:
        turn = 0
        for _ in range(args.rounds):
            for path in paths:
                sides = ["ours", "anchor"] if turn % 2 == 0 else ["anchor", "ours"]
                turn += 1
                for side in sides:
                    t0 = time.perf_counter()
                    if side == "anchor":
                        pages += plain_loop(path, cfg)
                    else:
                        stats = ours(path, cfg, tmp)
                        kept += stats.counters["docs_out"]
                        dropped.merge(stats)
                    seconds[side] += time.perf_counter() - t0
    ours_rate, anchor_rate = pages / seconds["ours"], pages / seconds["anchor"]
    print(f"{len(paths)} WARC files x {args.rounds} round(s): {pages} HTML pages (200, text/html) each side")
    print(f"ours:   extract_warc -> DocumentSink  {seconds['ours']:8.1f} s  {ours_rate:7.2f} pages/s")
    print(f"anchor: FastWARC + trafilatura loop   {seconds['anchor']:8.1f} s  {anchor_rate:7.2f} pages/s")
    print(f"ratio ours/anchor: {ours_rate / anchor_rate:.3f}  (goal >= 0.95)")
    print(f"ours kept {kept}; dropped {dict(dropped.dropped.most_common())}; errors {dropped.errors_total}")


if __name__ == "__main__":
    main()
