"""Sampling: greedy with the KV cache equals greedy without it; temperature, top-k and top-p behave; the
streaming generator yields what generate returns."""

from __future__ import annotations

import math

import pytest
import torch

from model import GPT, GPTConfig, generate, sample_next
from model.sampling import generate_tokens

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


def picks(logits: torch.Tensor, n: int = 400, **kw: object) -> set[int]:
    g = torch.Generator().manual_seed(0)
    return {sample_next(logits, generator=g, **kw).item() for _ in range(n)}


# probabilities 0.5, 0.25, 0.15, 0.1 (token order shuffled so sorting matters)
PROBS = torch.tensor([[0.15, 0.5, 0.1, 0.25]])
LOGITS = PROBS.log()


@pytest.mark.parametrize(
    "top_p, kept",
    [
        (0.3, {1}),  # the likeliest token alone reaches 0.3
        (0.5, {1}),  # exactly 0.5: the top token is enough (>= top_p)
        (0.6, {1, 3}),  # 0.5 < 0.6 <= 0.75
        (0.75, {1, 3}),
        (0.8, {1, 3, 0}),  # 0.75 < 0.8 <= 0.9
        (0.95, {0, 1, 2, 3}),
        (1e-6, {1}),  # always at least the top token
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, kept: set[int]) -> None:
    assert picks(LOGITS, top_p=top_p) == kept


def test_top_p_renormalises_the_kept_tokens() -> None:
    g = torch.Generator().manual_seed(3)
    draws = [sample_next(LOGITS, top_p=0.6, generator=g).item() for _ in range(3000)]
    share = draws.count(1) / len(draws)
    assert math.isclose(share, 0.5 / 0.75, abs_tol=0.03)


def test_top_p_applies_after_temperature_and_top_k() -> None:
    # temperature 3 flattens to about 0.33, 0.26, 0.22, 0.19 (tokens 1, 3, 0, 2): 0.5 now needs two tokens
    assert picks(LOGITS, temperature=3.0, top_p=0.5) == {1, 3}
    # top-k 2 leaves tokens 1 and 3 (0.67, 0.33 after renormalising): 0.6 is reached by token 1 alone
    assert picks(LOGITS, top_k=2, top_p=0.6) == {1}
    assert picks(LOGITS, top_k=2, top_p=0.7) == {1, 3}


def test_top_p_one_is_no_top_p(model: GPT) -> None:
    logits = torch.randn(3, CFG.vocab_size)
    for kw in ({}, {"top_k": 10}):
        a = [sample_next(logits, generator=torch.Generator().manual_seed(s), **kw) for s in range(20)]
        b = [
            sample_next(logits, generator=torch.Generator().manual_seed(s), top_p=1.0, **kw)
            for s in range(20)
        ]
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    prompt = torch.randint(0, CFG.vocab_size, (1, 3))
    runs = [
        generate(model, prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(9), **kw)
        for kw in ({}, {"top_p": 1.0})
    ]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("top_p", [0.0, -0.1, 1.5])
def test_top_p_out_of_range_is_refused(top_p: float) -> None:
    with pytest.raises(ValueError, match="top_p"):
        sample_next(LOGITS, top_p=top_p)


def test_generate_tokens_streams_what_generate_returns(model: GPT) -> None:
    prompt = torch.randint(0, CFG.vocab_size, (2, 4))
    kw = dict(temperature=1.0, top_k=20, top_p=0.9)
    whole = generate(model, prompt, 25, generator=torch.Generator().manual_seed(4), **kw)
    steps = list(generate_tokens(model, prompt, 25, generator=torch.Generator().manual_seed(4), **kw))
    assert len(steps) == 25 and all(s.shape == (2, 1) for s in steps)
    assert torch.equal(torch.cat((prompt, *steps), dim=1), whole)


def test_generate_tokens_is_lazy_and_stops_after_eos(model: GPT) -> None:
    prompt = torch.randint(0, CFG.vocab_size, (1, 4))
    first = generate(model, prompt, 1, temperature=0.0)[0, -1].item()
    stream = generate_tokens(model, prompt, 50, temperature=0.0, eos_id=first)
    assert next(stream).item() == first  # the EOS itself is yielded, then nothing more
    assert list(stream) == []
