"""Random training windows and fixed validation windows, read zero-copy from memory-mapped token shards.

At start the folder is checked cheaply against its manifest (sizes, counts, the tokenizer's sha256); each
shard's sha256 is checked when it is first opened.

A split's shards are one token stream (documents end in EOS, GPT-2 style), so a window may span documents
and even shards. A window inside one shard is a view of the mmap; only the rare one crossing a shard
boundary is copied. The batch for a step is a pure function of (seed, step): resuming needs no RNG state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.config import UsageError
from tokenizer.shards import Manifest, ShardInfo, read_manifest, read_shard, sha256_file, verify_shards


class TokenStream:
    """The shards of one split, read as one contiguous stream of tokens.

    A shard is opened (memory-mapped) the first time a window reaches it, and its sha256 is checked against
    the manifest then: a damaged or replaced shard stops training with its name, not a wrong loss.
    """

    def __init__(self, folder: str, infos: list[ShardInfo]) -> None:
        self.folder = folder
        self.infos = [s for s in infos if s.num_tokens]
        lengths = np.array([s.num_tokens for s in self.infos], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(lengths)))  # stream offset of each shard, then the end
        self.num_tokens = int(self.starts[-1])
        self._open: dict[int, np.ndarray] = {}

    def shard(self, i: int) -> np.ndarray:
        """The tokens of shard i, memory-mapped, checked on first use."""
        if i not in self._open:
            info = self.infos[i]
            path = os.path.join(self.folder, info.file)
            if sha256_file(path) != info.sha256:
                raise UsageError(
                    f"{path}: sha256 differs from the manifest (the shard changed or is damaged); "
                    f"`tokenmill verify {self.folder}` checks them all"
                )
            self._open[i] = read_shard(path).tokens
        return self._open[i]

    @property
    def shards(self) -> list[np.ndarray]:
        return [self.shard(i) for i in range(len(self.infos))]

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens start..start+length: a view of the shard's mmap unless it crosses a shard boundary."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"window {start}+{length} outside a stream of {self.num_tokens} tokens")
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        offset = start - int(self.starts[i])
        if offset + length <= len(self.shard(i)):
            return self.shard(i)[offset : offset + length]
        pieces, need = [], length
        while need:
            piece = self.shard(i)[offset : offset + need]
            pieces.append(piece)
            need -= len(piece)
            i, offset = i + 1, 0
        return np.concatenate(pieces)


class ShardLoader:
    """(x, y) batches of block_size tokens, y shifted by one, from a tokenmill shard folder."""

    def __init__(
        self, data_dir: str, block_size: int, batch_size: int, seed: int, name: str | None = None
    ) -> None:
        """data_dir is a local folder; `name` is what messages call it (the URL it is a copy of)."""
        self.manifest = open_manifest(data_dir)
        problems = verify_shards(data_dir, deep=False)  # cheap: sizes, counts, the tokenizer's sha256
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise UsageError(f"{name or data_dir}: {problems[0]}{more}; `tokenmill verify` lists them")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        splits = self.manifest.splits
        self.train = TokenStream(data_dir, splits.get("train", []))
        self.val = TokenStream(data_dir, splits.get("val", []))
        if self.train.num_tokens < block_size + 1:
            raise UsageError(
                f"{name or data_dir}: the train split has {self.train.num_tokens} tokens, fewer than "
                f"one window of block_size+1 = {block_size + 1}; add data or lower block_size"
            )

    @property
    def has_val(self) -> bool:
        return self.val.num_tokens >= self.block_size + 1

    def _batch(self, stream: TokenStream, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # The one copy: B windows into an int64 tensor, which is what nn.Embedding and cross_entropy take.
        buf = torch.from_numpy(
            np.stack([stream.window(int(s), self.block_size + 1) for s in starts]).astype(np.int64)
        )
        return buf[:, :-1], buf[:, 1:]

    def train_starts(self, step: int, micro: int = 0) -> np.ndarray:
        rng = np.random.default_rng((self.seed, step, micro))
        return rng.integers(0, self.train.num_tokens - self.block_size, size=self.batch_size)

    def train_batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniformly random windows; the same (seed, step, micro) always gives the same batch."""
        return self._batch(self.train, self.train_starts(step, micro))

    def val_batches(self, max_batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same evenly spread windows every time (comparable losses); none if val is too short."""
        if not self.has_val:
            return
        span = self.val.num_tokens - (self.block_size + 1)
        # Never more windows than fit side by side, so a short val split is not counted several times over.
        n = min(max_batches * self.batch_size, self.val.num_tokens // (self.block_size + 1))
        starts = np.linspace(0, span, n).round().astype(np.int64)
        for i in range(0, n, self.batch_size):
            yield self._batch(self.val, starts[i : i + self.batch_size])


def open_manifest(data_dir: str) -> Manifest:
    """The manifest of a shard folder, or a one-line UsageError saying what is wrong with the folder."""
    if not os.path.isdir(data_dir):
        raise UsageError(f"shard folder {data_dir} does not exist")
    try:
        return read_manifest(data_dir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{data_dir}: unreadable manifest.json ({e})") from None
