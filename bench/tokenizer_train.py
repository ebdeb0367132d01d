"""Tokenizer training on the dev pages at 8k, 32k and 64k tokens: time, and bytes per token.

Documents: the 1,358 WCXB dev pages (../shared/data/warc/cclike-wcxb-dev-000*.warc.gz) extracted once with
`tokenmill extract` into --work (1,343 documents, 13.4 MB of text). For each vocabulary size:

  ours    `train_tokenizer()`: the seeded sample drawn by Ray tasks (here the whole corpus: it is under the
          default 2 GB budget), GPT-4 split, byte-level BPE, tokenmill's special tokens; wall time of the
          call, Ray already started.
  anchor  the tokenizers library alone on the same texts, already in memory: a GPT-2-style byte-level BPE
          (`ByteLevel` pre-tokenizer with its regex), `train_from_iterator`, the same trainer settings.

Bytes per token: UTF-8 bytes of every text over its tokens (no EOS), on the same pages (in sample), and on
`../shared/data/text/tinyshakespeare.txt` (out of sample, another register). The time ratio ours/anchor
says what sampling on Ray and the GPT-4 split cost; the bytes per token what they give.

    .venv/bin/python bench/tokenizer_train.py --repeats 2
"""

from __future__ import annotations

import argparse
import glob
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import pyarrow.parquet as pq  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from pipeline.ray_cluster import init_ray  # noqa: E402
from pipeline.stage_folder import read_stage  # noqa: E402
from tokenizer.bpe import SPECIAL_TOKENS, load_tokenizer  # noqa: E402
from tokenizer.train import TokenizerConfig, train_tokenizer  # noqa: E402

WARCS = sorted(glob.glob(str(REPO.parent / "shared/data/warc/cclike-wcxb-dev-000*.warc.gz")))
SHAKESPEARE = REPO.parent / "shared/data/text/tinyshakespeare.txt"


def gpt2_style(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def bytes_per_token(tok: Tokenizer, texts: list[str]) -> float:
    tokens = sum(len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False))
    return sum(len(t.encode()) for t in texts) / tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/tokenmill-tokenize-bench")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vocab", type=int, nargs="+", default=[8192, 32768, 65536])
    args = ap.parse_args()
    if not WARCS:
        sys.exit("the dev WARCs (../shared/data/warc) are absent: nothing to measure")
    work = Path(args.work)
    docs = work / "extract"
    if not list(docs.glob("part-*.parquet")):
        subprocess.run([str(REPO / ".venv/bin/tokenmill"), "extract", *WARCS, "-o", str(docs)], check=True)
    texts = []
    for part in read_stage(str(docs)).document_inputs():
        texts += pq.read_table(part.url, columns=["text"]).column("text").to_pylist()
    other = [SHAKESPEARE.read_text()] if SHAKESPEARE.exists() else []
    init_ray()
    print(f"{len(texts):,} documents, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB of text")
    head = f"{'vocab':>7} {'ours s':>8} {'anchor s':>9} {'ratio':>6}   bytes/token: {'ours':>5} {'anchor':>6}"
    print(head + (f"   shakespeare: {'ours':>5} {'anchor':>6}" if other else ""))
    for vocab in args.vocab:
        ours_s, anchor_s = [], []
        for r in range(args.repeats):
            out = str(work / f"tok-{vocab}-{r}.json")
            Path(out.removesuffix(".json") + ".stats.json").unlink(missing_ok=True)
            start = time.perf_counter()
            train_tokenizer(str(docs), out, TokenizerConfig(vocab_size=vocab), overwrite=True)
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            anchor = gpt2_style(texts, vocab)
            anchor_s.append(time.perf_counter() - start)
        ours = load_tokenizer(out)
        o, a = statistics.median(ours_s), statistics.median(anchor_s)
        line = f"{vocab:>7} {o:>8.2f} {a:>9.2f} {a / o:>5.2f}x   "
        line += f"{' ' * 13}{bytes_per_token(ours, texts):>5.2f} {bytes_per_token(anchor, texts):>6.2f}"
        if other:
            line += f"{' ' * 16}{bytes_per_token(ours, other):>5.2f} {bytes_per_token(anchor, other):>6.2f}"
        print(line)


if __name__ == "__main__":
    main()
