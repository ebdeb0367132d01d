"""Autoregressive sampling: temperature (0 = greedy argmax), top-k, top-p (nucleus), an optional EOS stop,
a KV cache. `generate_tokens` yields each step's tokens as they come (streaming); `generate` collects them."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from model.gpt import GPT, KVCache


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Pick one token per row from logits (B, vocab) -> (B, 1).

    Applied in HF's order: temperature, then top-k, then top-p (keep the smallest set of likeliest tokens
    whose probability reaches top_p; the likeliest token always stays). top_p 1 is off.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    if top_p < 1:  # skipped at 1: a cumsum rounding to 1.0 early must not drop the tail
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the likelier tokens
        drop_sorted = mass_before >= top_p  # the first token has 0 before it: always kept
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)  # multinomial renormalises
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate_tokens(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    top_p: float = 1.0,
) -> Iterator[torch.Tensor]:
    """Continue idx (B, T) one step at a time, yielding each step's new tokens (B, 1) as soon as sampled.

    Stops after max_new_tokens steps, or after the step in which the last row produced eos_id (that step
    is yielded: the EOS included). A context longer than block_size is cropped to its last block_size
    tokens, exactly as without a cache: positions are absolute, so once the cache is full it is refilled
    from the cropped context (costs what the no-cache path costs every step).
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
        next_id = sample_next(logits[:, -1, :], temperature, top_k, generator, top_p)
        # only the last block_size tokens are ever read again: the context need not grow without bound
        idx = torch.cat((idx[:, -block_size:], next_id), dim=1)
        yield next_id
        if eos_id is not None:
            done |= next_id.squeeze(1) == eos_id
            if bool(done.all()):
                return


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
    top_p: float = 1.0,
) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens; stop early once every row has produced eos_id.

    Returns the prompt followed by the new tokens (the EOS included); see generate_tokens.
    """
    steps = generate_tokens(
        model, idx, max_new_tokens, temperature, top_k, eos_id, generator, use_cache, top_p
    )
    return torch.cat((idx, *steps), dim=1)
