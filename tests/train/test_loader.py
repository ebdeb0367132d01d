"""The shard loader: windows in bounds, shifted targets, seeded, zero-copy views of the mmapped shards; a
weighted mixture of folders: `DIR:WEIGHT` parsing, shares, determinism, one tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import UsageError
from tokenizer.shards import read_manifest, read_shard
from train.loader import DataSource, MixtureLoader, ShardLoader, parse_data, parse_data_spec

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


def test_batches_are_the_windows_of_the_stream_exactly(loader: ShardLoader) -> None:
    """The vectorised copy gives what a window-by-window stack gives (the batches of every earlier
    version), including windows that cross a shard boundary: old checkpoints resume on the same data."""
    stream = loader.train
    boundary = int(stream.starts[1])
    starts = np.array([boundary - 10, 0, boundary, stream.num_tokens - BLOCK - 1, boundary - BLOCK - 1])
    out = np.empty((len(starts), BLOCK + 1), dtype=np.int64)
    stream.read_windows(starts, out)
    assert np.array_equal(out, np.stack([stream.window(int(s), BLOCK + 1) for s in starts]))
    for step in range(30):
        x, y = loader.train_batch(step, micro=step % 2)
        windows = [stream.window(int(s), BLOCK + 1) for s in loader.train_starts(step, step % 2)]
        expected = torch.from_numpy(np.stack(windows).astype(np.int64))
        assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])


# ---------------------------------------------------------------------------------------------------------
# mixtures


@pytest.mark.parametrize(
    "spec, url, weight",
    [
        ("shards", "shards", 1.0),
        ("shards:0.7", "shards", 0.7),
        ("runs/a/shards:3", "runs/a/shards", 3.0),
        ("shards:.5", "shards", 0.5),
        ("shards:2e-1", "shards", 0.2),
        ("s3://bucket/x", "s3://bucket/x", 1.0),  # the scheme's ':' is no weight
        ("s3://bucket/x:0.7", "s3://bucket/x", 0.7),
        ("s3://bucket:0.5", "s3://bucket", 0.5),
        ("s3://bucket/2024-05-01T10:30/shards", "s3://bucket/2024-05-01T10:30/shards", 1.0),
        ("runs/10:30/shards:0.25", "runs/10:30/shards", 0.25),
        ("runs/a:b", "runs/a:b", 1.0),
        ("runs/a:", "runs/a:", 1.0),
        ("runs/a:inf", "runs/a:inf", 1.0),  # only plain decimal numbers are weights
        ("runs/x:2:1", "runs/x:2", 1.0),  # a folder whose name ends in ':2', weight 1
        ("/data/shards:10", "/data/shards", 10.0),
    ],
)
def test_data_spec_splits_a_weight_off_the_last_colon_only(spec: str, url: str, weight: float) -> None:
    source = parse_data_spec(spec)
    assert (source.url, source.weight) == (url, weight)


@pytest.mark.parametrize("spec", ["shards:0", "shards:-1", "shards:-0.5", ":0.5", "s3://b/x:0.0"])
def test_data_spec_with_a_weight_that_is_not_positive_is_refused(spec: str) -> None:
    with pytest.raises(UsageError, match="positive|no shard folder") as err:
        parse_data_spec(spec)
    assert "\n" not in str(err.value)


def test_weights_are_normalised_and_sources_named_by_their_shortest_distinct_tail(tmp_path: Path) -> None:
    sources = parse_data([f"{tmp_path}/a/web:3", f"{tmp_path}/b/web", "s3://bucket/books:4"])
    assert [s.weight for s in sources] == [0.375, 0.125, 0.5]
    assert [s.name for s in sources] == ["a/web", "b/web", "bucket/books"]
    assert [s.name for s in parse_data(["x/web", "y/books"])] == ["web", "books"]
    assert parse_data("one/shards") == [DataSource("one/shards", 1.0, "shards")]
    with pytest.raises(UsageError, match="given twice"):
        parse_data([f"{tmp_path}/a:1", f"{tmp_path}/./a/:2"])
    with pytest.raises(UsageError, match="no shard folder"):
        parse_data([])


def mixture(folders: list[tuple[Path, float]], seed: int = 3, batch_size: int = 8) -> MixtureLoader:
    sources = parse_data([f"{folder}:{weight}" for folder, weight in folders])
    return MixtureLoader(sources, [str(f) for f, _ in folders], BLOCK, batch_size, seed)


def test_mixture_draws_each_source_with_its_weight(shard_dir: Path, shard_dir_b: Path) -> None:
    mix = mixture([(shard_dir, 0.7), (shard_dir_b, 0.3)])
    assert [s.name for s in mix.sources] == [shard_dir.name, shard_dir_b.name]
    picks = np.concatenate([mix.train_choices(step, micro)[0] for step in range(500) for micro in range(2)])
    # 8,000 windows: the standard error of a share is 0.005, so 0.025 is five of them
    assert abs(np.mean(picks == 0) - 0.7) < 0.025 and set(picks.tolist()) == {0, 1}
    # each row is a window of the source it was drawn from (one uint16 folder, one uint32)
    for step in range(20):
        source, starts = mix.train_choices(step)
        x, y = mix.train_batch(step)
        for row, (k, start) in enumerate(zip(source.tolist(), starts.tolist(), strict=True)):
            window = mix.loaders[k].train.window(start, BLOCK + 1)
            assert start + BLOCK + 1 <= mix.loaders[k].train.num_tokens
            assert np.array_equal(x[row].numpy(), window[:-1]) and np.array_equal(y[row].numpy(), window[1:])


def test_mixture_batches_are_a_pure_function_of_seed_and_step(shard_dir: Path, shard_dir_b: Path) -> None:
    """An uninterrupted loader and one started afresh at step 40 (a resumed run) give the same batches."""
    folders = [(shard_dir, 0.5), (shard_dir_b, 0.5)]
    uninterrupted = mixture(folders)
    first = [uninterrupted.train_batch(step, micro)[0] for step in range(60) for micro in range(2)]
    resumed = mixture(folders)
    again = [resumed.train_batch(step, micro)[0] for step in range(40, 60) for micro in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first[80:], again, strict=True))
    other_seed = mixture(folders, seed=4)
    assert not torch.equal(first[0], other_seed.train_batch(0)[0])
    assert not torch.equal(first[0], first[1])  # micro-steps differ


def test_one_source_batches_are_the_single_folder_loaders(shard_dir: Path, loader: ShardLoader) -> None:
    mix = mixture([(shard_dir, 0.3)])
    assert mix.sources[0].weight == 1.0
    for step in range(10):
        (x, y), (x1, y1) = mix.train_batch(step, 1), loader.train_batch(step, 1)
        assert torch.equal(x, x1) and torch.equal(y, y1)


def test_mixture_refuses_another_tokenizer_naming_both(
    shard_dir: Path, shard_dir_other_tokenizer: Path
) -> None:
    with pytest.raises(UsageError, match="different tokenizers") as err:
        mixture([(shard_dir, 1), (shard_dir_other_tokenizer, 1)])
    message = str(err.value)
    assert str(shard_dir) in message and str(shard_dir_other_tokenizer) in message and "\n" not in message


def test_mixture_val_is_each_sources_fixed_windows(
    shard_dir: Path, shard_dir_b: Path, shard_dir_no_val: Path, loader: ShardLoader
) -> None:
    mix = mixture([(shard_dir, 2), (shard_dir_b, 1), (shard_dir_no_val, 1)])
    assert mix.has_val
    with_val = list(mix.val_sources())
    assert [s.name for s, _ in with_val] == [shard_dir.name, shard_dir_b.name]
    ours = [x for x, _ in with_val[0][1].val_batches(3)]
    assert all(torch.equal(a, b) for a, b in zip(ours, [x for x, _ in loader.val_batches(3)], strict=True))
    assert mix.train_tokens == sum(ld.train.num_tokens for ld in mix.loaders)


def test_windows_outside_the_stream_are_refused(loader: ShardLoader) -> None:
    out = np.empty((1, BLOCK + 1), dtype=np.int64)
    for start in (-1, loader.train.num_tokens - BLOCK, loader.train.num_tokens, loader.train.num_tokens + 5):
        with pytest.raises(IndexError):
            loader.train.read_windows(np.array([start]), out)
