"""Rebuild the WARC, extraction-truth and near-duplicate fixtures of tests/data from ../shared/data.

Every WARC fixture is a byte-for-byte copy of whole gzip members (one per record) of a real file, so the
records, digests and offsets are the originals. Run once by hand; the tests only read the results.

    .venv/bin/python tests/data/make_fixtures.py
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from fastwarc.warc import ArchiveIterator

SHARED = Path("/work/shared/data")
HERE = Path(__file__).resolve().parent
SAMPLE = SHARED / "warc/cclike-sample-small.warc.gz"


def record_offsets(path: Path) -> list[tuple[int, str, str]]:
    return [
        (r.stream_pos, str(r.record_type), r.headers.get("WARC-Target-URI") or "")
        for r in ArchiveIterator(str(path), parse_http=False)
    ]


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    # mtime=0: the same rows give the same bytes
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def main() -> None:
    data = SAMPLE.read_bytes()
    recs = record_offsets(SAMPLE)

    # sample-20: warcinfo + the first 20 pages (request/response/metadata, a redirect and a PDF among them)
    requests = [pos for pos, rtype, _ in recs if rtype == "request"]
    end20 = requests[20]
    (HERE / "sample-20.warc.gz").write_bytes(data[:end20])
    urls20 = [url for pos, rtype, url in recs if pos < end20 and rtype == "response"]

    # sample-trunc: the first 3 pages, then the 4th page's response cut in the middle of its gzip member
    responses = [pos for pos, rtype, _ in recs if rtype == "response"]
    cut_start, cut_next = responses[3], next(p for p, _, _ in recs if p > responses[3])
    (HERE / "sample-trunc.warc.gz").write_bytes(data[: (cut_start + cut_next) // 2])

    # page-fr: a real French page (request, response, metadata) behind its file's warcinfo record
    dev1 = SHARED / "warc/cclike-wcxb-dev-0001.warc.gz"
    dev1_recs = record_offsets(dev1)
    fr_url = "https://www.esprit-barbecue.fr/barbecue-charbon/8866-1600-martinsen.html"
    fr_positions = [pos for pos, _, url in dev1_recs if url == fr_url]
    after = next(pos for pos, _, _ in dev1_recs if pos > fr_positions[-1])
    raw = dev1.read_bytes()
    (HERE / "page-fr.warc.gz").write_bytes(raw[: dev1_recs[1][0]] + raw[fr_positions[0] : after])

    # heritrix-2008: the first 20 records of a 2008 Heritrix WARC/0.17 file
    heritrix = SHARED / "warc/real/heritrix-2008-warc017.warc.gz"
    h_recs = record_offsets(heritrix)
    (HERE / "heritrix-2008-warc017-head.warc.gz").write_bytes(heritrix.read_bytes()[: h_recs[20][0]])

    for name in [
        "warc/edge/warcio-example-trunc.warc",
        "warc/edge/warcio-example.arc",
        "warc/edge/warcio-example.warc.gz",
        "warc/edge/warcio-example-wrong-chunks.warc.gz",
        "warc/edge/warcio-example-iana.org-chunked.warc",
        "warc/edge/resiliparse-clipped.warc.gz",
        "warc/real/cc-main-2024-22-whirlwind.warc.gz",
        "warc/real/cc-main-2024-22-whirlwind.warc.wet.gz",
    ]:
        shutil.copyfile(SHARED / name, HERE / Path(name).name)

    # truth rows (WCXB) for the sample-20 pages and the French page
    with gzip.open(SHARED / "extraction/wcxb-dev-truth.jsonl.gz", "rt", encoding="utf-8") as f:
        truth = {row["url"]: row for row in map(json.loads, f)}
    rows = [truth[u] for u in urls20 + [fr_url] if u in truth]
    write_jsonl_gz(HERE / "wcxb-truth-fixtures.jsonl.gz", rows)

    # near-duplicate subset: whole labelled clusters of every size, plus singletons
    with gzip.open(SHARED / "dedup/neardup-dev.jsonl.gz", "rt", encoding="utf-8") as f:
        nd = [json.loads(line) for line in f]
    by_cluster: dict[int, list[dict]] = {}
    for row in nd:
        by_cluster.setdefault(row["cluster"], []).append(row)
    chosen: list[int] = []
    for size, count in ((4, 4), (3, 3), (2, 3), (1, 6)):
        chosen += [c for c in sorted(by_cluster) if len(by_cluster[c]) == size][:count]
    subset = [row for row in nd if row["cluster"] in set(chosen)]
    write_jsonl_gz(HERE / "neardup-subset.jsonl.gz", subset)
    print(
        f"sample-20: {end20} bytes, {len(urls20)} responses; truth rows {len(rows)}; "
        f"neardup {len(subset)} rows"
    )


if __name__ == "__main__":
    main()
