"""Does the extract stage scale with Ray workers? The same WARCs with a local Ray of 1 CPU, then 2.

Each run is a fresh process (`--cpus N`) that starts its own local Ray with N CPUs, warms the workers up,
then times the extract stage alone (Ray start excluded) over the WCXB dev WARCs, split into 8 files of
equal record counts so 2 workers get equal shares. The anchor is the 1-CPU run of this same invocation;
the goal is 2 workers >= 1.8x one.

    python bench/extract_scaling.py            # both runs and the ratio
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = sorted(Path("/work/shared/data/warc").glob("cclike-wcxb-dev-*.warc.gz"))


def split_warcs(folder: Path, parts: int = 8) -> list[str]:
    """The dev WARCs' gzip members (one record each) dealt round-robin into `parts` files."""
    from fastwarc.warc import ArchiveIterator

    members: list[bytes] = []
    for path in DEV:
        data = path.read_bytes()
        offsets = [r.stream_pos for r in ArchiveIterator(str(path), parse_http=False)] + [len(data)]
        members += [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]
    # a request, response and metadata record belong together: keep each triple in one file
    out = [bytearray() for _ in range(parts)]
    for i in range(0, len(members), 3):
        out[(i // 3) % parts] += b"".join(members[i : i + 3])
    paths = []
    for k, data in enumerate(out):
        p = folder / f"dev-part-{k}.warc.gz"
        p.write_bytes(bytes(data))
        paths.append(str(p))
    return paths


def one_run(cpus: int, inputs: list[str], output: str) -> dict:
    import ray

    from pipeline.extract import ExtractConfig
    from pipeline.stages import extract

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    ray.get([ray.remote(lambda: __import__("trafilatura") and 0).remote() for _ in range(cpus * 2)])
    start = time.perf_counter()
    result = extract(inputs, output, ExtractConfig())
    wall = time.perf_counter() - start
    assert result.complete, result.failed
    return {"cpus": cpus, "wall": wall, "pages": result.stats.counters["docs_in"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpus", type=int, help="(internal) one run with this many CPUs; prints JSON")
    p.add_argument("--inputs", nargs="*", help="(internal)")
    p.add_argument("--output", help="(internal)")
    args = p.parse_args()
    if args.cpus:
        print(json.dumps(one_run(args.cpus, args.inputs, args.output)))
        return
    if not DEV:
        sys.exit("needs /work/shared/data/warc/cclike-wcxb-dev-*.warc.gz")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = split_warcs(Path(tmp))
        runs = {}
        for cpus in (1, 2):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--cpus",
                    str(cpus),
                    "--output",
                    f"{tmp}/out{cpus}",
                    "--inputs",
                    *inputs,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[cpus] = json.loads(done.stdout.strip().splitlines()[-1])
    for cpus, r in runs.items():
        print(
            f"{cpus} worker(s): {r['pages']} pages in {r['wall']:.1f}s = {r['pages'] / r['wall']:.1f} pages/s"
        )
    print(f"speed-up of 2 workers over 1: {runs[1]['wall'] / runs[2]['wall']:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
