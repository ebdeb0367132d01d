"""Text in, text out from a pretrain run folder (RUN/ckpt.pt + RUN/tokenizer.json): nothing else is needed.

RUN may be a URL (s3://...): its two files are downloaded to the cache first, once per version.
"""

from __future__ import annotations

import os

import torch
from tokenizers import Tokenizer

from model import GPT, generate
from pipeline import storage
from pipeline.config import UsageError
from tokenizer.bpe import load_tokenizer
from tokenizer.shards import TOKENIZER_FILE
from train.checkpoint import CKPT_FILE, load_checkpoint, model_from_checkpoint
from train.pretrain import resolve_device
from train.remote import RunFolder


def _local_run(run_dir: str, cache_dir: str | None) -> str:
    """A local run folder: run_dir itself (or the folder of its ckpt.pt), or a copy of a remote one."""
    if storage.is_local(run_dir):
        return (os.path.dirname(run_dir) or ".") if os.path.isfile(run_dir) else run_dir
    if run_dir.rstrip("/").endswith(f"/{CKPT_FILE}"):
        run_dir = run_dir.rstrip("/")[: -len(CKPT_FILE) - 1]
    run = RunFolder(run_dir, cache_dir)
    missing = run.pull(CKPT_FILE, TOKENIZER_FILE)
    if missing:
        raise UsageError(
            f"no {missing[0]} in {run.url}: is it a `tokenmill pretrain --output` folder? "
            f"(a run folder holds {CKPT_FILE} and {TOKENIZER_FILE})"
        )
    return run.local


def load_run(run_dir: str, device: str = "auto", cache_dir: str | None = None) -> tuple[GPT, Tokenizer, int]:
    """(model in eval mode on device, tokenizer, eos id) of a run folder; run_dir may also be its ckpt.pt."""
    run_dir = _local_run(run_dir, cache_dir)
    ckpt = load_checkpoint(run_dir)
    tok_path = os.path.join(run_dir, TOKENIZER_FILE)
    if not os.path.exists(tok_path):
        raise UsageError(f"no tokenizer.json in {run_dir}: a pretrain run folder holds one beside ckpt.pt")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)  # weights and KV cache in one dtype; logits are upcast to sample
    return model, load_tokenizer(tok_path), int(ckpt["data"]["eos_id"])


def generate_text(
    run_dir: str,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "auto",
    cache_dir: str | None = None,
) -> str:
    """Continue prompt with up to max_new_tokens tokens; stop at EOS. Returns only the new text.

    temperature 0 is greedy (deterministic); top_k None or 0 samples from the whole vocabulary.
    """
    if max_new_tokens < 0:
        raise UsageError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise UsageError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise UsageError(f"top_k must be >= 0, got {top_k}")
    model, tok, eos = load_run(run_dir, device, cache_dir)
    dev = next(model.parameters()).device
    # Training documents follow an EOS in the token stream, so EOS + prompt reads as "a document starting
    # with prompt" (and gives an empty prompt something to condition on).
    ids = [eos] + tok.encode(prompt, add_special_tokens=False).ids
    idx = torch.tensor([ids], dtype=torch.long, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = generate(
        model, idx, max_new_tokens, temperature=temperature, top_k=top_k or None, eos_id=eos, generator=gen
    )
    new = out[0, len(ids) :].tolist()
    if eos in new:
        new = new[: new.index(eos)]
    return tok.decode(new)
