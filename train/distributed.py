"""Data-parallel training: the process group, which share of a step each process computes, model wrapping
(DDP or FSDP2) and whole-model state for checkpoints.

One process (`python -m jobs.pretrain`) is world size 1 and none of this costs anything. Under `torchrun`
the environment names the rank; under Ray Train's TorchTrainer the process group is already up when the
loop starts. Either way every process runs the same loop.

The global batch is fixed by the config, not by the world size: a step is `grad_accum` micro-batches of
`batch_size` windows, micro-batch m being the loader's (seed, step, m). Process r computes the micro-batches
r, r + W, r + 2W, ... (nanoGPT divides its accumulation steps by the world size the same way). So one
process and W processes train on the same windows with the same gradient, and a checkpoint resumes at any
world size that divides grad_accum.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from pipeline.config import UsageError

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    """This process's place among the trainers."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def micro_steps(self, grad_accum: int) -> range:
        """The micro-batch indices of a step this process computes."""
        return range(self.rank, grad_accum, self.world_size)

    def check_divides(self, grad_accum: int) -> None:
        if grad_accum % self.world_size:
            raise UsageError(
                f"grad_accum {grad_accum} does not split over {self.world_size} processes: the global batch "
                f"is batch_size x grad_accum, so grad_accum must be a multiple of the world size "
                f"(e.g. --grad-accum {self.world_size * max(1, grad_accum // self.world_size)})"
            )


def join_world(device_type: str) -> World:
    """Join the process group torchrun or Ray Train set up (or start it from torchrun's environment);
    a single process when neither did."""
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World()
        backend = "nccl" if device_type == "cuda" else "gloo"
        # a long timeout: rank 0 may spend minutes copying remote shards while the others wait
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=60))
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local)


def leave_world(world: World) -> None:
    """Tear down a process group this module started (torchrun); Ray Train tears down its own."""
    if world.distributed and dist.is_initialized() and "TORCHELASTIC_RUN_ID" in os.environ:
        dist.destroy_process_group()


def wrap_model(
    model: torch.nn.Module, world: World, strategy: str, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """The module the training step calls: `model` itself alone, DDP around it, or `model` sharded in
    place by FSDP2 (each block, then the root; bf16 parameters for compute when dtype is bf16, fp32
    gradient reduction)."""
    if not world.distributed:
        return model
    if strategy == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


@contextlib.contextmanager
def gradient_sync(wrapped: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Reduce gradients across processes only on the step's last micro-batch (sync=True)."""
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and not sync:
        with wrapped.no_sync():
            yield
        return
    if hasattr(wrapped, "set_requires_gradient_sync"):  # an FSDP2 module
        wrapped.set_requires_gradient_sync(sync)
    yield


def all_sum(world: World, *values: float) -> list[float]:
    """Each value summed over the processes (as float64); the values themselves when alone."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def any_process(world: World, flag: bool) -> bool:
    """True on every process when it is true on any (a signal one process caught stops them all)."""
    if not world.distributed:
        return flag
    return all_sum(world, float(flag))[0] > 0


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's `obj` on every process (pickled: small metadata only, never tensors of a model)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The whole model and optimizer state, on CPU, keyed by parameter name: what a checkpoint holds
    whatever the world size or strategy. A collective under FSDP: every process calls it; rank 0 gets the
    tensors (others get empty dicts)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_state_dict(model, optimizer, options=options)


def load_full_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, world: World, state: tuple[dict, dict] | None
) -> None:
    """Load a checkpoint's `full_state` into this process's (possibly sharded) model and optimizer. When
    distributed only rank 0 passes the state; it is broadcast and each process keeps its shard."""
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=world.distributed)
    model_state, optim_state = state if state is not None else ({}, {})
    # two calls, not set_state_dict: given an empty model state (ranks > 0) it skips the model's broadcast
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optim_state, options=options)
