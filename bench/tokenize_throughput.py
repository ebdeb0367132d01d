"""The tokenize stage (encode, shuffle, pack, write shards and manifest, on Ray) against encoding alone.

Documents: the 1,358 WCXB dev pages (../shared/data/warc/cclike-wcxb-dev-000*.warc.gz) extracted once with
`tokenmill extract` into --work (1,343 documents, 4 part files); --copies N adds N-1 copies of every part
under new ids, for a run long enough that Ray's fixed costs (task start-up, two waves) are not the figure.

  anchor  tokenizers' `Tokenizer.encode_batch` on every text, in this process on all cores (the library's
          own threads), the result discarded; the texts are read into memory first, untimed.
  ours    `tokenize()`: read the Parquet parts, encode (EOS appended), split, order, write the sections,
          pack and write every shard, the manifest; into a fresh folder each time, on the Ray instance
          started before the timings (a job pays its start once; it is not the stage's cost).

Both use one tokenizer trained by `train_tokenizer` (32,768 tokens) on these documents. Repetitions are
interleaved (anchor, ours, anchor, ...) and the medians compared: ratio = ours / anchor in tokens per second.

    .venv/bin/python bench/tokenize_throughput.py --copies 4 --repeats 3
"""

from __future__ import annotations

import argparse
import glob
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline.ray_cluster import init_ray  # noqa: E402
from pipeline.stage import Stage, TaskRun, run_stage  # noqa: E402
from pipeline.stage_folder import TaskInput, read_stage  # noqa: E402
from tokenizer.bpe import load_tokenizer  # noqa: E402
from tokenizer.shards import read_manifest  # noqa: E402
from tokenizer.tokenize import TokenizeConfig, tokenize  # noqa: E402
from tokenizer.train import TokenizerConfig, train_tokenizer  # noqa: E402

WARCS = sorted(glob.glob(str(REPO.parent / "shared/data/warc/cclike-wcxb-dev-000*.warc.gz")))


@dataclass(frozen=True)
class Copies:
    copies: int


def copy_part(run: TaskRun) -> None:
    """A stage of the bench's own: a part with every id suffixed (copy 0 is the part itself)."""
    table = pq.read_table(run.input)
    n = run.identity["copy"]
    if n:
        table = table.set_column(0, "id", pc.binary_join_element_wise(table.column("id"), f"#{n}", ""))
    with open(run.output(f"part-{run.key}.parquet"), "wb") as f:
        pq.write_table(table, f)
    run.stats.add("docs_out", table.num_rows)


def documents(work: Path, copies: int) -> str:
    extract = work / "extract"
    if not list(extract.glob("part-*.parquet")):
        subprocess.run([str(REPO / ".venv/bin/tokenmill"), "extract", *WARCS, "-o", str(extract)], check=True)
    if copies == 1:
        return str(extract)
    parts = read_stage(str(extract)).document_inputs()
    inputs = [
        TaskInput(f"{p.key}-{c}", p.url, {**p.identity, "copy": c}) for p in parts for c in range(copies)
    ]
    out = work / f"docs-x{copies}"
    stage = Stage("extract", "bench", copy_part, Copies(copies), outputs=("part-*.parquet",))
    run_stage(stage, inputs, str(out))
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/tokenmill-tokenize-bench")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not WARCS:
        sys.exit("the dev WARCs (../shared/data/warc) are absent: nothing to measure")
    work = Path(args.work)
    init_ray()
    docs = documents(work, args.copies)
    tok_path = str(work / "tokenizer.json")
    train_tokenizer(docs, tok_path, TokenizerConfig(vocab_size=32768))
    texts = []
    for part in read_stage(docs).document_inputs():
        texts += pq.read_table(part.url, columns=["text"]).column("text").to_pylist()
    tok = load_tokenizer(tok_path)
    text_bytes = sum(len(t.encode()) for t in texts)
    anchor_s, ours_s, tokens = [], [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=False)
        anchor_s.append(time.perf_counter() - start)
        out = work / "shards"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = tokenize(docs, tok_path, str(out), TokenizeConfig())
        ours_s.append(time.perf_counter() - start)
        tokens = result.stats.counters["train_tokens"] + result.stats.counters["val_tokens"]
    docs_n = len(texts)
    content = tokens - docs_n  # the anchor has no EOS; compare the same content tokens
    a, o = statistics.median(anchor_s), statistics.median(ours_s)
    print(f"{docs_n:,} documents, {text_bytes / 1e6:.1f} MB of text, {content:,} tokens (+{docs_n:,} EOS)")
    runs = f"anchor {[round(x, 2) for x in anchor_s]} s, ours {[round(x, 2) for x in ours_s]} s"
    print(f"anchor  Tokenizer.encode_batch, discarded: {content / a:>12,.0f} tokens/s  (median {a:.2f} s)")
    print(f"ours    tokenize -> shards + manifest:     {content / o:>12,.0f} tokens/s  (median {o:.2f} s)")
    print(f"runs: {runs}")
    print(f"ratio ours/anchor: {a / o:.2f}x  (goal >= 0.9x)")
    manifest = read_manifest(str(work / "shards"))
    for split, shards in manifest.splits.items():
        sizes = ", ".join(f"{s.num_tokens:,} tokens / {s.bytes / 1e6:.1f} MB" for s in shards)
        print(f"{split}: {len(shards)} shard(s): {sizes}")


if __name__ == "__main__":
    main()
