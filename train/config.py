"""PretrainConfig: every knob of a pretraining run, and how TOML tables and CLI flags become one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from model import GPTConfig
from pipeline.config import UsageError, from_table, read_toml
from train.loader import parse_data_spec

# Model shape fields: they must match a checkpoint to resume it. vocab_size comes from the shard manifest.
MODEL_KEYS = (
    "n_layer",
    "n_head",
    "n_kv_head",
    "n_embd",
    "ffn_hidden",
    "block_size",
    "rope_theta",
    "norm_eps",
    "tie_embeddings",
    "qk_norm",
    "dropout",
)


@dataclass
class PretrainConfig:
    # Defaults are configs/model/tiny.toml (the CPU demo), so a bare `tokenmill pretrain` runs anywhere.
    # model
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 0  # grouped-query attention: key/value heads (0: n_head)
    n_embd: int = 128
    ffn_hidden: int = 0  # SwiGLU width (0: 8/3 n_embd, rounded up to 64)
    block_size: int = 128
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    qk_norm: bool = False
    dropout: float = 0.0
    # optimisation
    batch_size: int = 16
    grad_accum: int = 1  # micro-batches per step: a bigger effective batch without the memory
    max_steps: int = 600
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    lr_decay_steps: int | None = None  # end of the cosine; None = max_steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 = off
    # bookkeeping
    eval_interval: int = 100
    eval_steps: int = 10
    log_interval: int = 10
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2  # numbered ckpt-STEP.pt kept beside ckpt.pt (the latest); 0: ckpt.pt only
    seed: int = 1337
    device: str = "auto"  # auto = cuda if available, else cpu
    dtype: str = "auto"  # auto = bfloat16 autocast on CUDA, float32 elsewhere
    compile: str | bool = "auto"  # auto = torch.compile on CUDA only
    strategy: str = "ddp"  # with several processes: ddp (replicated) or fsdp (FSDP2, sharded weights)
    peak_tflops: float = 0.0  # one device's peak, for the MFU column; 0: known GPUs' bf16 peak, none on CPU
    # data: shard folders as "DIR[:WEIGHT]" (`--data`); several make a weighted mixture. Empty: --data only
    # (`tokenmill run` trains on its own shards unless [pretrain] data is given).
    data: tuple[str, ...] = ()

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> PretrainConfig:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "grad_accum",
            "max_steps",
            "eval_interval",
            "eval_steps",
            "log_interval",
            "checkpoint_interval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_decay_steps is not None and self.lr_decay_steps <= self.warmup_steps:
            raise UsageError(
                f"lr_decay_steps ({self.lr_decay_steps}) must exceed warmup_steps ({self.warmup_steps})"
            )
        if self.min_lr > self.lr:
            raise UsageError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise UsageError(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        if self.strategy not in ("ddp", "fsdp"):
            raise UsageError(f"strategy must be ddp or fsdp, got {self.strategy!r}")
        if self.peak_tflops < 0:
            raise UsageError(f"peak_tflops must be >= 0, got {self.peak_tflops}")
        if self.compile not in ("auto", True, False):
            raise UsageError(f"compile must be auto, true or false, got {self.compile!r}")
        for spec in self.data:
            parse_data_spec(spec)  # a bad weight is named before any work
        try:
            self.model_config(vocab_size=1)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return self


def with_depth(cfg: PretrainConfig, depth: int) -> PretrainConfig:
    """cfg with the model shape GPTConfig.from_depth derives from one number."""
    if depth < 1:
        raise UsageError(f"depth must be >= 1, got {depth}")
    shape = GPTConfig.from_depth(depth, vocab_size=1, block_size=cfg.block_size)
    return replace(cfg, n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head, n_kv_head=0)


def config_from_dict(data: Mapping[str, Any], base: PretrainConfig | None = None) -> PretrainConfig:
    """Build a config from a TOML document or table, on top of base (default: the built-in defaults).

    Accepts `[model]` (shape keys only) and `[pretrain]` tables as in configs/model/*.toml, and/or the
    PretrainConfig keys directly at the top level (so a caller can pass its own `[pretrain]` table).
    Names and types are checked by pipeline.config.from_table: a typo must not silently train the wrong model.
    """
    cfg = base or PretrainConfig()
    flat = _one_folder_as_list({k: v for k, v in data.items() if k not in ("model", "pretrain")})
    for section in ("model", "pretrain"):
        table = data.get(section, {})
        if not isinstance(table, Mapping):
            raise UsageError(f"[{section}] must be a table, got {type(table).__name__} {table!r}")
        table = _one_folder_as_list(table) if section == "pretrain" else table
        if section == "model" and (unknown := sorted(set(table) - set(MODEL_KEYS))):
            hint = " (vocab_size comes from the shard manifest)" if "vocab_size" in unknown else ""
            raise UsageError(
                f"[model] has unknown key(s) {', '.join(unknown)}{hint}; known: {', '.join(MODEL_KEYS)}"
            )
        cfg = from_table(PretrainConfig, table, section, cfg)
    return from_table(PretrainConfig, flat, "top level", cfg)


def _one_folder_as_list(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """`data = "shards"` is `data = ["shards"]`."""
    if isinstance(table.get("data"), str):
        return {**table, "data": [table["data"]]}
    return table


def pretrain_config_from_tables(
    model: Mapping[str, Any], pretrain: Mapping[str, Any], base: PretrainConfig | None = None
) -> PretrainConfig:
    """The `[model]` and `[pretrain]` tables of a TOML config (e.g. `tokenmill run`'s) as one config."""
    return config_from_dict({"model": model, "pretrain": pretrain}, base).validate()


def load_config_file(path: str, base: PretrainConfig | None = None) -> PretrainConfig:
    data = read_toml(path)
    try:
        return config_from_dict(data, base)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None
