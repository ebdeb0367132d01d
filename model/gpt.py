"""A Llama-style decoder: pre-norm RMSNorm blocks, rotary positions, grouped-query attention, SwiGLU.

`GPT.forward(idx, targets, cache)` is the only entry point: training passes targets, generation passes a
`KVCache` so each new token attends to stored keys/values instead of recomputing the whole prefix. The
conventions are transformers' Llama (RoPE rotating the two halves of each head, RMSNorm in float32 with a
weight, no biases), so model/hf.py maps the weights one-to-one onto LlamaForCausalLM.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import GPTConfig


class KVCache:
    """Keys and values of every position seen so far, preallocated for block_size positions per layer."""

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (config.n_layer, batch_size, config.kv_heads, config.block_size, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # positions filled; advanced by GPT.forward once every layer has stored its part

    @property
    def capacity(self) -> int:
        return self.k.size(3)

    def reset(self) -> None:
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values at pos..pos+T and return all keys/values up to there."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (as Llama: bf16 sums of squares lose too much)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is x * rsqrt(mean(x^2) + eps) in one op (bit-identical to spelling it out, fewer kernels
        # in eager); the weight multiplies after the cast back, as Llama's does
        h = F.rms_norm(x.float(), (x.size(-1),), eps=self.eps)
        return self.weight * h.to(x.dtype)


class Rotary(nn.Module):
    """cos and sin of every position's rotation angles; q and k are rotated by halves (Llama's layout)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        angles = torch.outer(torch.arange(config.block_size, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # (block_size, head_dim): both halves share a frequency
        sin = angles.sin()
        sin[:, : d // 2].neg_()  # rotate_half's minus sign folded into the table: one op less per q and k
        self.register_buffer("cos", angles.cos(), persistent=False)  # recomputed, never checkpointed
        self.register_buffer("sin", sin, persistent=False)  # (-sin, sin) by halves

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate x (B, heads, T, head_dim) as positions start..start+T: x * cos + rotate_half(x) * sin, with
        rotate_half(x) = (-x2, x1) computed as (x2, x1) times the signed table (exactly the same numbers)."""
        T = x.size(2)
        cos, sin = self.cos[start : start + T].to(x.dtype), self.sin[start : start + T].to(x.dtype)
        half = x.size(-1) // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return x * cos + swapped * sin


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # which slice of a KVCache belongs to this module
        self.n_head, self.n_kv, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.dropout = config.dropout
        # q, k and v in one matmul (faster than three); model/hf.py splits it for Llama
        self.wqkv = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None

    def forward(self, x: torch.Tensor, rotary: Rotary, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.wqkv(x).split(
            [self.n_head * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim], dim=2
        )
        # (B, T, heads * head_dim) -> (B, heads, T, head_dim): heads become a batch dimension for SDPA
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        past = cache.pos if cache is not None else 0
        q, k = rotary(q, past), rotary(k, past)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        # SDPA's is_causal aligns the mask top-left, which is only right when queries and keys start together;
        # one new query may see every cached key; a chunk appended to a cache needs an explicit offset mask.
        mask = None
        if past and T > 1:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=past == 0 and T > 1,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv != self.n_head,  # each group of query heads shares one key/value head
        )
        return self.wo(y.transpose(1, 2).contiguous().view(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.w_up = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.w_down = nn.Linear(config.hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config, layer)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rotary: Rotary, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rotary, cache))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.rotary = Rotary(config)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.apply(self._init_weights)
        # GPT-2's rule: the projections into the residual stream get std 0.02 / sqrt(2 * n_layer), so the
        # stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.wo.weight", "mlp.w_down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters; without the token embedding by default, unless it is also the output projection."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_embeddings:
            n -= self.embed.weight.numel()
        return n

    def flops_per_token(self, context: int | None = None) -> int:
        """Training FLOPs per token (forward + backward): 6 per weight of a matmul plus attention's
        12 * layers * width * context (the PaLM appendix's estimate, as nanoGPT's MFU uses)."""
        cfg = self.config
        weights = sum(p.numel() for n, p in self.named_parameters() if p.dim() == 2 and n != "embed.weight")
        if cfg.tie_embeddings:  # the shared matrix is a lookup going in and a matmul coming out
            weights += self.lm_head.weight.numel()
        return 6 * weights + 12 * cfg.n_layer * cfg.n_embd * (context or cfg.block_size)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits, loss).

        With targets: logits for every position (B, T, vocab) and the mean cross-entropy (targets of -1 are
        ignored). Without: logits of the last position only (B, 1, vocab), all that sampling needs.
        With a cache, idx holds only the new tokens; they sit at positions cache.pos onwards.
        """
        T = idx.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, self.rotary, cache)
        if cache is not None:
            cache.pos += T
        x = self.norm(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizer(
        self,
        weight_decay: float,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.95),
        device_type: str = "cpu",
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices (weights, embeddings) but not norm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        # The fused kernel is one pass over each parameter (CUDA and CPU) instead of a dozen
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type in ("cuda", "cpu"))
