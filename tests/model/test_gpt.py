"""The model: shapes, loss, weight tying, the KV cache agreeing with a full forward pass, and the same logits
as transformers' LlamaForCausalLM given the same weights."""

from __future__ import annotations

import math

import pytest
import torch

from model import GPT, GPTConfig, KVCache

CFG = GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, dropout=0.0)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_forward_shapes_and_initial_loss(model: GPT) -> None:
    idx = torch.randint(0, CFG.vocab_size, (3, CFG.block_size))
    logits, loss = model(idx, torch.randint(0, CFG.vocab_size, (3, CFG.block_size)))
    assert logits.shape == (3, CFG.block_size, CFG.vocab_size)
    assert loss.shape == ()
    # At init the prediction is near uniform: cross-entropy of unrelated targets close to ln(vocab).
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


def test_weights_are_tied_unless_asked_not_to(model: GPT) -> None:
    assert model.lm_head.weight is model.embed.weight
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())
    untied = GPT(
        GPTConfig(vocab_size=97, block_size=16, n_layer=1, n_head=2, n_embd=32, tie_embeddings=False)
    )
    assert untied.lm_head.weight is not untied.embed.weight
    assert untied.num_params() == untied.num_params(non_embedding=False) - 97 * 32


def test_sizes_from_depth_and_flops_per_token() -> None:
    cfg = GPTConfig.from_depth(12, vocab_size=50304, block_size=1024)
    assert (cfg.n_embd, cfg.n_head, cfg.hidden) == (768, 6, 2048)
    model = GPT(cfg)
    assert 120e6 < model.num_params(non_embedding=False) < 130e6  # the GPT-2 small class
    n = sum(p.numel() for p in model.parameters() if p.dim() == 2)  # tied: each matrix is a matmul once
    assert model.flops_per_token() == 6 * n + 12 * 12 * 768 * 1024


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


@pytest.mark.parametrize("tie, kv_heads", [(True, 2), (False, 4)])
@torch.no_grad()
def test_same_logits_as_transformers_llama(tie: bool, kv_heads: int) -> None:
    """The weights map one-to-one (model/hf.py): transformers' Llama computes the same logits from them."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.hf import llama_config, llama_state_dict

    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=101,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_kv_head=kv_heads,
        n_embd=64,
        tie_embeddings=tie,
        rope_theta=50000.0,
        norm_eps=1e-6,
    )
    ours = GPT(cfg).eval()
    for p in ours.parameters():  # norms away from 1, so a missed or swapped weight shows
        p.add_(torch.randn_like(p) * 0.05)
    llama = LlamaForCausalLM(LlamaConfig(**llama_config(cfg))).eval()
    result = llama.load_state_dict(llama_state_dict(ours), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= ({"lm_head.weight"} if tie else set())
    idx = torch.randint(0, 101, (2, 24))
    torch.testing.assert_close(ours(idx, idx)[0], llama(idx).logits, rtol=1e-5, atol=1e-5)


def test_qk_norm_trains_and_refuses_the_llama_export() -> None:
    from model.hf import llama_config

    cfg = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16, qk_norm=True)
    model = GPT(cfg)
    idx = torch.randint(0, 50, (2, 8))
    model(idx, idx)[1].backward()
    assert model.blocks[0].attn.q_norm.weight.grad is not None
    with pytest.raises(ValueError, match="QK-norm"):
        llama_config(cfg)
