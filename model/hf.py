"""The model as transformers' Llama: its config and its weights, one tensor for one tensor.

Only the fused q/k/v matrix is split (Llama keeps three); every other tensor keeps its values. Nothing
here imports transformers: the export step (train/) builds LlamaForCausalLM from these two dicts.
"""

from __future__ import annotations

from typing import Any

import torch

from model.config import GPTConfig
from model.gpt import GPT


def llama_config(config: GPTConfig, eos_id: int | None = None, pad_id: int | None = None) -> dict[str, Any]:
    """The LlamaConfig keyword arguments of this shape."""
    if config.qk_norm:
        raise ValueError("Llama has no QK-norm: a model trained with qk_norm = true does not map onto it")
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }


def llama_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights under LlamaForCausalLM's names."""
    cfg = model.config
    q_rows, kv_rows = cfg.n_head * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = model.lm_head.weight
    for i, block in enumerate(model.blocks):
        pre = f"model.layers.{i}."
        q, k, v = block.attn.wqkv.weight.split([q_rows, kv_rows, kv_rows], dim=0)
        out.update(
            {
                pre + "input_layernorm.weight": block.attn_norm.weight,
                pre + "self_attn.q_proj.weight": q,
                pre + "self_attn.k_proj.weight": k,
                pre + "self_attn.v_proj.weight": v,
                pre + "self_attn.o_proj.weight": block.attn.wo.weight,
                pre + "post_attention_layernorm.weight": block.mlp_norm.weight,
                pre + "mlp.gate_proj.weight": block.mlp.w_gate.weight,
                pre + "mlp.up_proj.weight": block.mlp.w_up.weight,
                pre + "mlp.down_proj.weight": block.mlp.w_down.weight,
            }
        )
    return {name: t.detach().clone().contiguous() for name, t in out.items()}
