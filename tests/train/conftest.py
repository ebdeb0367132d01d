"""Shard folders built from real text (a tinyshakespeare excerpt) and a tiny config that trains in seconds."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from tokenizer.bpe import encode_documents, eos_id, train_bpe
from tokenizer.shards import (
    TOKENIZER_FILE,
    Manifest,
    TokenizerInfo,
    sha256_file,
    token_dtype,
    write_manifest,
    write_shard,
)
from train.config import PretrainConfig

EXCERPT = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare-excerpt.txt"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one torch thread, and far faster when another process holds the other
    core (OpenMP threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


def write_shard_folder(
    folder: Path,
    tok: Tokenizer,
    train: Sequence[Sequence[str]],
    val: Sequence[Sequence[str]],
    dtype: np.dtype | None = None,
) -> Path:
    """One shard per inner list of documents, per split; the tokenizer copied beside the manifest.
    dtype: the token dtype (default: the smallest that holds the vocabulary)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok_path = str(folder / TOKENIZER_FILE)
    tok.save(tok_path)
    dtype = np.dtype(dtype or token_dtype(tok.get_vocab_size()))
    splits = {}
    for split, shards in (("train", train), ("val", val)):
        splits[split] = []
        for i, docs in enumerate(shards):
            ids = list(encode_documents(tok, list(docs), dtype)) if docs else []
            doc_ids = [f"<urn:uuid:{split}-{i}-{j}>" for j in range(len(ids))]
            splits[split].append(write_shard(str(folder / f"{split}-{i:05d}.arrow"), ids, doc_ids, dtype))
    info = TokenizerInfo(TOKENIZER_FILE, sha256_file(tok_path), tok.get_vocab_size(), eos_id(tok))
    write_manifest(str(folder), Manifest(tokenizer=info, dtype=np.dtype(dtype).name, splits=splits))
    return folder


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """The excerpt as documents of ~10 speeches each (speeches are separated by blank lines)."""
    speeches = EXCERPT.read_text(encoding="utf-8").split("\n\n")
    return ["\n\n".join(speeches[i : i + 10]) for i in range(0, len(speeches), 10)]


@pytest.fixture(scope="session")
def tokenizer(documents: list[str]) -> Tokenizer:
    return train_bpe(documents, vocab_size=512)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Tokenizer, documents: list[str]) -> Path:
    """Two train shards (so windows can cross a shard boundary) and one val shard of the last documents."""
    train, val = documents[:-6], documents[-6:]
    half = len(train) // 2
    return write_shard_folder(
        tmp_path_factory.mktemp("shards"), tokenizer, [train[:half], train[half:]], [val]
    )


@pytest.fixture(scope="session")
def shard_dir_no_val(
    tmp_path_factory: pytest.TempPathFactory, tokenizer: Tokenizer, documents: list[str]
) -> Path:
    """A val split too short for one window (one tiny document), as a small tokenize run can produce."""
    return write_shard_folder(
        tmp_path_factory.mktemp("shards-no-val"), tokenizer, [documents[:20]], [["Hi."]]
    )


@pytest.fixture(scope="session")
def shard_dir_b(tmp_path_factory: pytest.TempPathFactory, tokenizer: Tokenizer, documents: list[str]) -> Path:
    """A second folder with the same tokenizer for mixtures: other documents (the excerpt backwards),
    stored as uint32 (as a vocabulary over 65,536 would be), with its own val split."""
    docs = documents[::-1]
    return write_shard_folder(
        tmp_path_factory.mktemp("shards-b") / "b", tokenizer, [docs[:-6]], [docs[-6:]], np.uint32
    )


@pytest.fixture(scope="session")
def shard_dir_other_tokenizer(tmp_path_factory: pytest.TempPathFactory, documents: list[str]) -> Path:
    """The same text under another tokenizer (another vocabulary size): not mixable with shard_dir."""
    return write_shard_folder(
        tmp_path_factory.mktemp("shards-other") / "other", train_bpe(documents, 400), [documents], [[]]
    )


def tiny_config(**overrides: object) -> PretrainConfig:
    """A model that learns something from the excerpt in a couple of seconds on 2 CPU cores."""
    base = dict(
        n_layer=2,
        n_head=2,
        n_embd=64,
        block_size=32,
        batch_size=16,
        max_steps=40,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=5,
        eval_interval=10,
        eval_steps=2,
        log_interval=5,
        checkpoint_interval=10,
        seed=7,
        device="cpu",
    )
    return PretrainConfig(**{**base, **overrides})


# One layer at a high LR gets past the unigram plateau (val loss ~5.4 on this text with the GPT-4-split
# tokenizer of 512) within 200 steps, to ~4.8.
TRAINED_RUN = tiny_config(n_layer=1, max_steps=200, lr=1e-2, min_lr=1e-3)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, shard_dir: Path) -> Path:
    """A finished tiny pretrain run folder, shared by the generate tests."""
    from train.pretrain import pretrain

    run = tmp_path_factory.mktemp("run") / "run"
    with one_thread():
        pretrain(str(shard_dir), str(run), TRAINED_RUN, progress=False)
    assert os.path.exists(run / "ckpt.pt")
    return run
