"""The GPT module: shapes, loss, weight tying, and the KV cache agreeing with a full forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from model import GPT, GPTConfig, KVCache

CFG = GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_forward_shapes_and_initial_loss(model: GPT) -> None:
    idx = torch.randint(0, CFG.vocab_size, (3, CFG.block_size))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, CFG.block_size, CFG.vocab_size)
    assert loss.shape == ()
    # At init the prediction is near uniform: cross-entropy close to ln(vocab).
    assert abs(loss.item() - math.log(CFG.vocab_size)) < 0.5
    logits, loss = model(idx)
    assert logits.shape == (3, 1, CFG.vocab_size) and loss is None


def test_ignore_index_and_backward(model: GPT) -> None:
    idx = torch.randint(0, CFG.vocab_size, (2, 8))
    targets = idx.clone()
    targets[:, :4] = -1
    _, loss = model.train()(idx, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.lm_head.weight.grad is not None


def test_weights_are_tied(model: GPT) -> None:
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())


def test_sequence_longer_than_block_size_is_refused(model: GPT) -> None:
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))


def test_config_rejects_heads_that_do_not_divide_width() -> None:
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=30, n_head=4)


@torch.no_grad()
def test_cached_forward_matches_full_forward(model: GPT) -> None:
    idx = torch.randint(0, CFG.vocab_size, (2, 12))
    full, _ = model(idx, idx)  # logits for every position
    cache = KVCache(CFG, batch_size=2, device="cpu")
    # Prefill 5, then a chunk of 4 (offset causal mask), then single tokens.
    out = [model(idx[:, :5], cache=cache)[0], model(idx[:, 5:9], cache=cache)[0]]
    out += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(9, 12)]
    assert cache.pos == 12
    for logits, t in zip(out, (4, 8, 9, 10, 11), strict=True):
        torch.testing.assert_close(logits[:, -1], full[:, t], rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=1, n_embd=16, dropout=0.5))
    idx = torch.randint(0, 50, (1, 8))
    m.eval()
    torch.testing.assert_close(m(idx, idx)[0], m(idx, idx)[0])
    m.train()
    assert not torch.equal(m(idx, idx)[0], m(idx, idx)[0])
