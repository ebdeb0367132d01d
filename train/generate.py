"""Text in, text out from a pretrain run folder (RUN/ckpt.pt + RUN/tokenizer.json): nothing else is needed."""

from __future__ import annotations

import os

import torch
from tokenizers import Tokenizer

from model import GPT, generate
from tokenizer.bpe import load_tokenizer
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.config import ConfigError
from train.pretrain import resolve_device


def load_run(run_dir: str, device: str = "auto") -> tuple[GPT, Tokenizer, int]:
    """(model in eval mode on device, tokenizer, eos id) of a run folder; run_dir may also be its ckpt.pt."""
    if os.path.isfile(run_dir):
        run_dir = os.path.dirname(run_dir) or "."
    ckpt = load_checkpoint(run_dir)
    tok_path = os.path.join(run_dir, "tokenizer.json")
    if not os.path.exists(tok_path):
        raise ConfigError(f"no tokenizer.json in {run_dir}: a pretrain run folder holds one beside ckpt.pt")
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
) -> str:
    """Continue prompt with up to max_new_tokens tokens; stop at EOS. Returns only the new text.

    temperature 0 is greedy (deterministic); top_k None or 0 samples from the whole vocabulary.
    """
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise ConfigError(f"top_k must be >= 0, got {top_k}")
    model, tok, eos = load_run(run_dir, device)
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
