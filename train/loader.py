"""Random training windows and fixed validation windows, read from memory-mapped token shards; a weighted
mixture of several shard folders.

At start each folder is checked cheaply against its manifest (sizes, counts, the tokenizer's sha256); each
shard's sha256 is checked when it is first opened.

A split's shards are one token stream (documents end in EOS, GPT-2 style), so a window may span documents
and even shards. Windows are cast straight from the mmap into the batch's one int64 buffer. The batch for
a step is a pure function of (seed, step, micro): resuming needs no RNG state.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline import storage
from pipeline.config import UsageError
from tokenizer.shards import Manifest, ShardInfo, read_manifest, read_shard, sha256_file, verify_shards


class TokenStream:
    """Shards read as one contiguous stream of tokens: one split of a folder, or the train splits of a
    mixture's folders one after the other (so one lookup serves every source).

    A shard is opened (memory-mapped) the first time a window reaches it, and its sha256 is checked against
    the manifest then: a damaged or replaced shard stops training with its name, not a wrong loss.
    """

    def __init__(self, parts: Sequence[tuple[str, ShardInfo]]) -> None:
        """parts: (folder, shard) in stream order."""
        self.parts = [(folder, s) for folder, s in parts if s.num_tokens]
        self.infos = [s for _, s in self.parts]
        lengths = np.array([s.num_tokens for s in self.infos], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(lengths)))  # stream offset of each shard, then the end
        self.num_tokens = int(self.starts[-1])
        self._open: dict[int, np.ndarray] = {}

    def shard(self, i: int) -> np.ndarray:
        """The tokens of shard i, memory-mapped, checked on first use."""
        if i not in self._open:
            folder, info = self.parts[i]
            path = os.path.join(folder, info.file)
            if sha256_file(path) != info.sha256:
                raise UsageError(
                    f"{path}: sha256 differs from the manifest (the shard changed or is damaged); "
                    f"`tokenmill verify {folder}` checks them all"
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

    def read_windows(self, starts: np.ndarray, out: np.ndarray) -> None:
        """Copy the windows at `starts` into the rows of `out` (windows of out.shape[1] tokens), casting to
        out's dtype.

        One searchsorted finds every window's shard; each row is then one slice-assignment from the mmap,
        which casts uint16/uint32 to int64 in the same pass (no intermediate copy).
        """
        length = out.shape[1]
        shard_of = np.searchsorted(self.starts, starts, side="right") - 1
        offsets = (starts - self.starts[shard_of]).tolist()
        for row, (i, offset) in enumerate(zip(shard_of.tolist(), offsets, strict=True)):
            tokens = self._open.get(i)
            if tokens is None:
                if not 0 <= i < len(self.parts):
                    raise IndexError(f"window {starts[row]} outside a stream of {self.num_tokens} tokens")
                tokens = self.shard(i)
            if offset + length <= len(tokens):
                out[row] = tokens[offset : offset + length]
            else:  # the rare window that crosses into the next shard (window() checks the stream's end)
                out[row] = self.window(int(starts[row]), length)


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
        self.train = TokenStream([(data_dir, s) for s in splits.get("train", [])])
        self.val = TokenStream([(data_dir, s) for s in splits.get("val", [])])
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
        buf = torch.empty((len(starts), self.block_size + 1), dtype=torch.int64)
        stream.read_windows(starts, buf.numpy())
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


# ---------------------------------------------------------------------------------------------------------
# a weighted mixture of shard folders

# What may follow the last ':' as a weight: a plain decimal number. Anything else (a URL's '//host/...',
# a time '10:30/x') is part of the path.
_WEIGHT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class DataSource:
    """One `--data DIR[:WEIGHT]`: a shard folder (path or URL), its share of the windows, a short name."""

    url: str
    weight: float = 1.0
    name: str = ""


def parse_data_spec(spec: str) -> DataSource:
    """`DIR` or `DIR:WEIGHT`. The weight is split off the last ':' only when a number follows it, so
    `s3://bucket/x` and `runs/10:30/x` are whole paths; a folder whose name ends in ':NUMBER' is `DIR:1`."""
    head, sep, tail = spec.rpartition(":")
    if not sep or not _WEIGHT.fullmatch(tail):
        return DataSource(spec)
    weight = float(tail)
    if not head:
        raise UsageError(f"--data {spec!r}: no shard folder before the weight")
    if not (weight > 0 and math.isfinite(weight)):
        raise UsageError(f"--data {spec!r}: the weight must be a positive number (DIR:0.7)")
    return DataSource(head, weight)


def parse_data(specs: str | Sequence[str]) -> list[DataSource]:
    """The sources of `--data` specs, weights normalised to sum 1, each named by the shortest tail of its
    path that tells it from the others (`val_loss/<name>` in metrics.jsonl)."""
    sources = [parse_data_spec(s) for s in ([specs] if isinstance(specs, str) else specs)]
    if not sources:
        raise UsageError("no shard folder: give --data SHARDS (or data = [...] in the config's [pretrain])")
    urls = [storage.normalize(s.url) for s in sources]
    urls = [os.path.normpath(u) if storage.is_local(u) else u for u in urls]  # a/./b/ is a/b
    for i, url in enumerate(urls):
        if url in urls[:i]:
            raise UsageError(f"{sources[i].url} is given twice: give it once, with the summed weight")
    total = sum(s.weight for s in sources)
    names = source_names(urls)
    return [DataSource(s.url, s.weight / total, n) for s, n in zip(sources, names, strict=True)]


def source_names(urls: Sequence[str]) -> list[str]:
    """`web` and `code` for .../web and .../code; `a/shards` and `b/shards` when the last parts agree."""
    parts = [[p for p in u.split("://", 1)[-1].split("/") if p] or [u] for u in urls]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(i) for i in range(len(urls))]


class MixtureLoader:
    """Batches whose windows come from several shard folders, each chosen with its weight.

    For (step, micro) one RNG seeded by (seed, step, micro) draws, for each of the B windows, its source
    (probability = weight) and then a uniformly random start in that source's train stream: a pure function
    of the step, so a resumed run sees the same batches. With one source no source is drawn, so its batches
    are exactly the ShardLoader's (and those of runs from before mixtures existed).

    The sources' train streams are read as one joined stream (`train`): a window never crosses from one
    source into the next, and a batch is one lookup and one copy whatever the number of sources.
    """

    def __init__(
        self,
        sources: Sequence[DataSource],
        local_dirs: Sequence[str],
        block_size: int,
        batch_size: int,
        seed: int,
    ) -> None:
        """local_dirs[i] is a local folder holding sources[i] (the folder itself, or a checked copy)."""
        self.sources = list(sources)
        self.loaders = [
            ShardLoader(d, block_size, batch_size, seed, name=s.url)
            for s, d in zip(sources, local_dirs, strict=True)
        ]
        first = self.loaders[0].manifest.tokenizer
        for s, loader in zip(self.sources[1:], self.loaders[1:], strict=True):
            if loader.manifest.tokenizer.sha256 != first.sha256:
                raise UsageError(
                    f"{self.sources[0].url} and {s.url} were tokenized with different tokenizers "
                    f"(sha256 {first.sha256[:12]}... vs {loader.manifest.tokenizer.sha256[:12]}...): "
                    "a mixture needs one tokenizer"
                )
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.manifest = self.loaders[0].manifest  # the tokenizer's; dtypes may differ (batches are int64)
        weights = np.array([s.weight for s in self.sources])
        self.weights = weights / weights.sum()  # parse_data normalises them already; any positive will do
        self._cum = np.cumsum(self.weights)
        self._cum[-1] = 1.0  # a draw in [0, 1) never falls past the last source through rounding
        self._highs = np.array([ld.train.num_tokens - block_size for ld in self.loaders], dtype=np.int64)
        if len(self.loaders) == 1:
            self.train = self.loaders[0].train
        else:  # each source's shards are opened (and checked) by this stream only
            self.train = TokenStream([part for ld in self.loaders for part in ld.train.parts])
        sizes = [ld.train.num_tokens for ld in self.loaders]
        self._source_starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)

    @property
    def train_tokens(self) -> int:
        return self.train.num_tokens

    @property
    def val_tokens(self) -> int:
        return sum(ld.val.num_tokens for ld in self.loaders)

    @property
    def has_val(self) -> bool:
        return any(ld.has_val for ld in self.loaders)

    def train_choices(self, step: int, micro: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(source index, start) of each window of the batch for (step, micro)."""
        if len(self.loaders) == 1:
            return np.zeros(self.batch_size, dtype=np.int64), self.loaders[0].train_starts(step, micro)
        rng = np.random.default_rng((self.seed, step, micro))
        source = np.searchsorted(self._cum, rng.random(self.batch_size), side="right")
        return source, rng.integers(0, self._highs[source])

    def train_batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """B windows of block_size+1 tokens in one int64 buffer; x and y are its two shifted views."""
        source, starts = self.train_choices(step, micro)
        buf = torch.empty((self.batch_size, self.block_size + 1), dtype=torch.int64)
        self.train.read_windows(self._source_starts[source] + starts, buf.numpy())
        return buf[:, :-1], buf[:, 1:]

    def val_sources(self) -> Iterator[tuple[DataSource, ShardLoader]]:
        """The sources that have a val split of at least one window, with their loaders."""
        return ((s, ld) for s, ld in zip(self.sources, self.loaders, strict=True) if ld.has_val)

    def describe(self) -> str:
        """One line: each source's name, weight, folder and train tokens."""
        return ", ".join(
            f"{s.name} {s.weight:.3g} ({s.url}, {ld.train.num_tokens:,} train tokens)"
            for s, ld in zip(self.sources, self.loaders, strict=True)
        )
