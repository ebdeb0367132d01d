"""Byte-level BPE with HF tokenizers: train on document text, load, encode with EOS appended."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS_TOKEN = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style): any byte sequence encodes, nothing maps to <unk>."""
    if vocab_size < 256 + 1:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + EOS), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(url: str) -> Tokenizer:
    """A tokenizer.json from a local path or any fsspec URL (s3://...)."""
    from pipeline.storage import read_bytes

    return Tokenizer.from_str(read_bytes(url).decode("utf-8"))


def eos_id(tokenizer: Tokenizer) -> int:
    token_id = tokenizer.token_to_id(EOS_TOKEN)
    if token_id is None:
        raise ValueError(f"tokenizer has no {EOS_TOKEN} token")
    return token_id


def encode_documents(tokenizer: Tokenizer, texts: list[str], dtype: np.dtype) -> Iterator[np.ndarray]:
    """Encode a batch of documents (in parallel, inside tokenizers) with EOS appended to each."""
    eos = eos_id(tokenizer)
    for enc in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
        ids = np.empty(len(enc.ids) + 1, dtype=dtype)
        ids[:-1] = enc.ids
        ids[-1] = eos
        yield ids
