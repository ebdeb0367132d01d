"""Peak memory of one extract task against the size of its WARC: it must not grow with the file.

Builds WARCs by concatenating the WCXB dev WARCs (gzip members concatenate into a valid WARC) up to a
small size (the anchor, ~64 MB) and a 1 GB-class size, then runs the extract task body (extract_warc into
a DocumentSink, as a Ray task runs it) on each in a fresh process and reads that process's peak RSS.

    python bench/extract_memory.py [--gb 1.0]     # the 1 GB run extracts ~20,000 pages: tens of minutes
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = sorted(Path("/work/shared/data/warc").glob("cclike-wcxb-dev-*.warc.gz"))


def build(path: Path, target_bytes: int) -> int:
    """Concatenate the dev WARCs (whole files, in turn) until `target_bytes`; return the size written."""
    size = 0
    with open(path, "wb") as out:
        while size < target_bytes:
            for src in DEV:
                data = src.read_bytes()
                out.write(data)
                size += len(data)
                if size >= target_bytes:
                    break
    return size


def one(warc: str, output: str) -> dict:
    from pipeline.documents import DocumentSink
    from pipeline.extract import ExtractConfig, extract_warc
    from pipeline.stats import Stats

    stats = Stats()
    start = time.perf_counter()
    with DocumentSink(f"{output}/part.parquet", f"{output}/excluded.parquet", stats) as sink:
        extract_warc(warc, sink, ExtractConfig())
    return {
        "seconds": time.perf_counter() - start,
        "records": stats.counters["docs_in"],
        "kept": stats.counters["docs_out"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gb", type=float, default=1.0, help="size of the large WARC in GB")
    p.add_argument("--anchor-mb", type=float, default=64, help="size of the small WARC in MB")
    p.add_argument("--one", nargs=2, metavar=("WARC", "OUT"), help="(internal) one run; prints JSON")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    if not DEV:
        sys.exit("needs /work/shared/data/warc/cclike-wcxb-dev-*.warc.gz")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, target in (("anchor", args.anchor_mb * 1e6), ("large", args.gb * 1e9)):
            warc = Path(tmp, f"{name}.warc.gz")
            size = build(warc, int(target))
            out = Path(tmp, f"out-{name}")
            out.mkdir()
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(warc), str(out)], capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            rows[name] = {"bytes": size, **json.loads(done.stdout.strip().splitlines()[-1])}
            warc.unlink()
    for name, r in rows.items():
        print(
            f"{name:>6}: {r['bytes'] / 1e6:8.0f} MB WARC, {r['records']} records ({r['kept']} kept) in "
            f"{r['seconds']:.0f}s ({r['records'] / r['seconds']:.1f} pages/s); "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    ratio = rows["large"]["peak_rss_mb"] / rows["anchor"]["peak_rss_mb"]
    growth = rows["large"]["bytes"] / rows["anchor"]["bytes"]
    print(f"peak RSS large/anchor: {ratio:.2f}x for a {growth:.0f}x larger WARC (flat = streaming)")


if __name__ == "__main__":
    main()
