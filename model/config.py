"""The shape of the model: everything needed to rebuild the module from a checkpoint.

The model is Llama's: its weights map one-to-one onto transformers' LlamaForCausalLM (model/hf.py), so a
config here is also a LlamaConfig (same RoPE, same RMSNorm, same SwiGLU).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    block_size: int = 256  # longest context the RoPE tables and the KV cache are built for
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_kv_head: int = 0  # key/value heads (grouped-query attention); 0: as many as n_head
    ffn_hidden: int = 0  # SwiGLU width; 0: 8/3 * n_embd rounded up to a multiple of 64 (Llama's rule)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the output projection is the token embedding
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before RoPE (steadier at high LR)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.head_dim % 2:
            raise ValueError(f"the head size n_embd / n_head ({self.head_dim}) must be even for RoPE")
        if self.n_kv_head < 0 or self.n_head % self.kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hidden(self) -> int:
        return self.ffn_hidden or 64 * -(-8 * self.n_embd // (3 * 64))

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, block_size: int, **overrides: object) -> GPTConfig:
        """One knob for the size: width 64 per layer, heads of 128 (nanochat's rule): depth 12 is a ~124M
        model with a 50k vocabulary, depth 20 ~560M."""
        width = 64 * depth
        return cls(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=depth,
            n_embd=width,
            n_head=max(1, width // 128),
            **overrides,  # type: ignore[arg-type]
        )
