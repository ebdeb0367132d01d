"""The shard loader: windows in bounds, shifted targets, seeded, zero-copy views of the mmapped shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import UsageError
from tokenizer.shards import read_manifest, read_shard
from train.loader import ShardLoader

BLOCK = 32


@pytest.fixture(scope="module")
def loader(shard_dir: Path) -> ShardLoader:
    return ShardLoader(str(shard_dir), block_size=BLOCK, batch_size=8, seed=3)


def test_train_batches_are_in_bounds_and_shifted(shard_dir: Path, loader: ShardLoader) -> None:
    vocab = read_manifest(str(shard_dir)).tokenizer.vocab_size
    for step in range(20):
        starts = loader.train_starts(step)
        assert starts.min() >= 0 and starts.max() + BLOCK + 1 <= loader.train.num_tokens
        x, y = loader.train_batch(step)
        assert x.shape == y.shape == (8, BLOCK) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert int(x.max()) < vocab and int(x.min()) >= 0


def test_batches_are_deterministic_per_seed_and_step(shard_dir: Path, loader: ShardLoader) -> None:
    again = ShardLoader(str(shard_dir), block_size=BLOCK, batch_size=8, seed=3)
    other = ShardLoader(str(shard_dir), block_size=BLOCK, batch_size=8, seed=4)
    assert torch.equal(loader.train_batch(5)[0], again.train_batch(5)[0])
    assert not torch.equal(loader.train_batch(5)[0], loader.train_batch(6)[0])
    assert not torch.equal(loader.train_batch(5)[0], other.train_batch(5)[0])


def test_windows_are_zero_copy_views_of_the_mmap(loader: ShardLoader) -> None:
    stream = loader.train
    assert len(stream.shards) == 2
    for shard in stream.shards:
        # Arrow hands out the mapped file itself: read-only memory the array does not own.
        assert not shard.flags.writeable and not shard.flags.owndata
    first = stream.window(10, BLOCK + 1)
    second = stream.window(int(stream.starts[1]) + 5, BLOCK + 1)
    assert np.shares_memory(first, stream.shards[0])
    assert np.shares_memory(second, stream.shards[1])


def test_window_across_a_shard_boundary_is_the_concatenation(loader: ShardLoader) -> None:
    stream = loader.train
    boundary = int(stream.starts[1])
    window = stream.window(boundary - 10, BLOCK + 1)
    expected = np.concatenate([stream.shards[0][-10:], stream.shards[1][: BLOCK + 1 - 10]])
    assert np.array_equal(window, expected)
    with pytest.raises(IndexError):
        stream.window(stream.num_tokens - BLOCK, BLOCK + 1)


def test_stream_is_the_shards_in_manifest_order(shard_dir: Path, loader: ShardLoader) -> None:
    manifest = read_manifest(str(shard_dir))
    tokens = np.concatenate([read_shard(str(shard_dir / s.file)).tokens for s in manifest.splits["train"]])
    assert loader.train.num_tokens == len(tokens)
    assert np.array_equal(loader.train.window(len(tokens) - 40, 40), tokens[-40:])


def test_val_windows_are_fixed_spread_and_in_bounds(loader: ShardLoader) -> None:
    assert loader.has_val
    first = [x for x, _ in loader.val_batches(3)]
    second = [x for x, _ in loader.val_batches(3)]
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert sum(len(x) for x in first) <= loader.val.num_tokens // (BLOCK + 1)


def test_short_val_split_yields_no_windows(shard_dir_no_val: Path) -> None:
    loader = ShardLoader(str(shard_dir_no_val), block_size=BLOCK, batch_size=4, seed=0)
    assert 0 < loader.val.num_tokens < BLOCK + 1
    assert not loader.has_val and list(loader.val_batches(5)) == []


def test_missing_or_bad_folder_is_a_config_error(tmp_path: Path, shard_dir: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        ShardLoader(str(tmp_path / "nope"), BLOCK, 4, 0)
    with pytest.raises(UsageError, match="manifest.json"):
        ShardLoader(str(tmp_path), BLOCK, 4, 0)
    with pytest.raises(UsageError, match="fewer than one window"):
        ShardLoader(str(shard_dir), 10**7, 4, 0)
