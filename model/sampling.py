"""Autoregressive sampling: temperature (0 = greedy argmax), top-k, an optional EOS stop, a KV cache."""

from __future__ import annotations

import torch

from model.gpt import GPT, KVCache


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, vocab) -> (B, 1)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens; stop early once every row has produced eos_id.

    Returns the prompt followed by the new tokens (the EOS included). A context longer than block_size is
    cropped to its last block_size tokens, exactly as without a cache: positions are absolute, so once the
    cache is full it is refilled from the cropped context (costs what the no-cache path costs every step).
    """
    block_size = model.config.block_size
    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, idx.size(0), idx.device, dtype) if use_cache else None
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if cache is None:
            logits, _ = model(idx[:, -block_size:])
        elif cache.pos == 0 or cache.pos + 1 > cache.capacity:
            cache.reset()
            logits, _ = model(idx[:, -block_size:], cache=cache)
        else:
            logits, _ = model(idx[:, -1:], cache=cache)
        next_id = sample_next(logits[:, -1, :], temperature, top_k, generator)
        idx = torch.cat((idx, next_id), dim=1)
        if eos_id is not None:
            done |= next_id.squeeze(1) == eos_id
            if bool(done.all()):
                break
    return idx
