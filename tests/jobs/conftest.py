"""What the `tokenmill run` tests share: a config of the whole pipeline with a model small enough for CI."""

from __future__ import annotations


def tiny_run_config(inputs: str, output: str, vocab_size: int = 512, max_steps: int = 12) -> str:
    """A `tokenmill run` TOML: the 20-page fixture's worth of data, a one-layer model, a few steps."""
    every = max(1, max_steps // 2)
    return f"""
[run]
inputs = ["{inputs}"]
output = "{output}"

[tokenizer]
vocab_size = {vocab_size}

[tokenize]
val_fraction = 0.2

[model]
n_layer = 1
n_head = 2
n_embd = 32
block_size = 32

[pretrain]
batch_size = 4
max_steps = {max_steps}
eval_interval = {every}
eval_steps = 2
log_interval = 3
checkpoint_interval = {every}
warmup_steps = 2

[generate]
prompt = "The"
max_new_tokens = 8
"""
