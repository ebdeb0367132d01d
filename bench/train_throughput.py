"""Pretrain step throughput of a model config on CPU, against anchors measured in the same run.

- ours: one full optimizer step as train/pretrain.py runs it (ShardLoader batch from memory-mapped shards,
  forward, backward, grad clip, AdamW), in tokens/s.
- anchor 1, float32 matmul: the machine's dense sgemm rate (n x n @ n x n). ours x model FLOPs per token
  divided by it is the model FLOP utilisation (MFU) against what this CPU does at best.
- anchor 2, bare step: the same step on a batch already in memory (no loader): ours / bare is the loader's
  cost (1.0 = free).
Rounds interleave the three, so another process stealing a core hits them alike; medians are printed.

    .venv/bin/python bench/train_throughput.py                       # configs/model/tiny.toml, random tokens
    .venv/bin/python bench/train_throughput.py --data runs/demo/shards --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from model import GPT  # noqa: E402
from tokenizer.shards import Manifest, TokenizerInfo, token_dtype, write_manifest, write_shard  # noqa: E402
from train.config import load_config_file  # noqa: E402
from train.loader import ShardLoader  # noqa: E402

REPO = os.path.join(os.path.dirname(__file__), "..")


def random_shards(folder: str, vocab_size: int, num_tokens: int) -> str:
    """A shard folder of random tokens (documents of 500), enough for the loader; no tokenizer needed."""
    dtype = token_dtype(vocab_size)
    tokens = np.random.default_rng(0).integers(0, vocab_size, num_tokens).astype(dtype)
    docs = np.split(tokens, range(500, num_tokens, 500))
    ids = [str(i) for i in range(len(docs))]
    info = write_shard(os.path.join(folder, "train-00000.arrow"), docs, ids, dtype)
    tok = TokenizerInfo("tokenizer.json", "-", vocab_size, 0)
    write_manifest(folder, Manifest(tokenizer=tok, dtype=dtype.name, splits={"train": [info], "val": []}))
    return folder


def matmul_flops(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "model", "tiny.toml"))
    ap.add_argument("--data", help="shard folder (default: random tokens, vocab --vocab-size)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per round and kind")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config_file(args.config)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or random_shards(tmp, args.vocab_size, 300_000)
        loader = ShardLoader(data, cfg.block_size, cfg.batch_size, cfg.seed)
        torch.manual_seed(cfg.seed)
        model = GPT(cfg.model_config(loader.manifest.tokenizer.vocab_size)).train()
        optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr)
        fixed = loader.train_batch(0)

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def timed(with_loader: bool, first: int) -> float:
            start = time.perf_counter()
            for s in range(first, first + args.steps):
                step(*(loader.train_batch(s) if with_loader else fixed))
            return args.steps * cfg.batch_size * cfg.block_size / (time.perf_counter() - start)

        timed(True, 0)  # warm up allocator and kernels
        ours, bare, sgemm = [], [], []
        for r in range(args.rounds):
            ours.append(timed(True, (r + 1) * args.steps))
            bare.append(timed(False, 0))
            sgemm.append(matmul_flops(1024, 10))

    n_params = model.num_params(non_embedding=False)
    # nanoGPT / PaLM accounting: 6 FLOPs per parameter per token (fwd + bwd) plus attention scores.
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    tps, bare_tps, peak = statistics.median(ours), statistics.median(bare), statistics.median(sgemm)
    print(
        f"config: {args.config} ({cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}d, block {cfg.block_size}, "
        f"batch {cfg.batch_size}, {n_params / 1e6:.2f}M params), {args.threads} torch threads"
    )
    print(
        f"ours:   {tps:,.0f} tokens/s  (loader + fwd + bwd + clip + AdamW; rounds: "
        f"{', '.join(f'{t:,.0f}' for t in ours)})"
    )
    print(f"bare:   {bare_tps:,.0f} tokens/s  (same step, batch already in memory)")
    print(f"sgemm:  {peak / 1e9:,.1f} GFLOP/s float32 1024^3 matmul")
    achieved = tps * flops_per_token
    print(f"model:  {achieved / 1e9:,.1f} GFLOP/s achieved ({flops_per_token / 1e6:.1f} MFLOP/token)")
    print(f"ratio ours/sgemm (MFU): {achieved / peak:.3f}")
    print(f"ratio ours/bare (loader cost, 1.0 = free): {tps / bare_tps:.3f}")


if __name__ == "__main__":
    main()
