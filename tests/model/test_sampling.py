"""Sampling: greedy with the KV cache equals greedy without it; temperature and top-k behave."""

from __future__ import annotations

import pytest
import torch

from model import GPT, GPTConfig, generate, sample_next

CFG = GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(1)
    return GPT(CFG).eval()


@pytest.mark.parametrize("new_tokens", [8, 40])  # 40 runs past block_size: the context window slides
def test_greedy_with_cache_equals_without(model: GPT, new_tokens: int) -> None:
    prompt = torch.randint(0, CFG.vocab_size, (2, 5))
    cached = generate(model, prompt, new_tokens, temperature=0.0, use_cache=True)
    plain = generate(model, prompt, new_tokens, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 5 + new_tokens)
    assert torch.equal(cached, plain)
    assert torch.equal(cached[:, :5], prompt)


def test_seeded_sampling_with_cache_equals_without(model: GPT) -> None:
    prompt = torch.randint(0, CFG.vocab_size, (1, 3))
    runs = [
        generate(
            model,
            prompt,
            30,
            temperature=1.0,
            top_k=10,
            generator=torch.Generator().manual_seed(5),
            use_cache=c,
        )
        for c in (True, False, True)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_stops_at_eos(model: GPT) -> None:
    prompt = torch.randint(0, CFG.vocab_size, (1, 4))
    first = generate(model, prompt, 1, temperature=0.0)[0, -1].item()  # make the greedy pick the EOS
    out = generate(model, prompt, 20, temperature=0.0, eos_id=first)
    assert out.shape == (1, 5) and out[0, -1].item() == first


def test_temperature_zero_is_argmax_and_top_k_restricts() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample_next(logits, temperature=0.0).item() == 1
    assert sample_next(logits, temperature=1.0, top_k=1).item() == 1
    g = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, temperature=2.0, top_k=2, generator=g).item() for _ in range(200)}
    assert picks == {1, 3}
    with pytest.raises(ValueError):
        sample_next(logits, temperature=-1.0)
