"""The pretraining loop on a Ray cluster: Ray Train's TorchTrainer starts N workers, sets up their process
group (gloo on CPU, NCCL on GPU) and each runs train/pretrain.py's `pretrain`, exactly as torchrun's
processes would. Rank 0 writes the run folder, so on more than one node it should be an s3:// URL (or a
shared mount): Ray Train's own checkpointing is not used.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

from pipeline.config import UsageError
from pipeline.ray_cluster import check_paths_reachable, forwarded_env, init_ray
from train.config import PretrainConfig
from train.loader import parse_data_spec


def _absolute(spec: str) -> str:
    source = parse_data_spec(spec)
    if "://" in source.url:
        return spec
    return f"{os.path.abspath(source.url)}:{source.weight}"


class _Outcomes:
    """Where the workers leave their summary (or the user error that stopped them) for the driver: Ray
    Train passes on metrics only with a checkpoint of its own, and the checkpoints live in the run folder."""

    def __init__(self) -> None:
        self.by_rank: dict[int, dict[str, Any]] = {}

    def put(self, rank: int, outcome: dict[str, Any]) -> None:
        self.by_rank[rank] = outcome

    def get(self) -> dict[int, dict[str, Any]]:
        return self.by_rank


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the loop, then its outcome to the driver."""
    import ray
    import ray.train

    from train.pretrain import pretrain

    cfg = PretrainConfig(**config["cfg"])
    try:
        outcome = pretrain(
            config["data"],
            config["out_dir"],
            cfg,
            config["resume"],
            progress=False,
            cache_dir=config["cache_dir"],
        )
    except UsageError as e:
        outcome = {"error": str(e)}
    ray.get(config["outcomes"].put.remote(ray.train.get_context().get_world_rank(), outcome))


def pretrain_on_ray(
    data: list[str] | None,
    out_dir: str,
    cfg: PretrainConfig,
    resume: bool,
    num_workers: int,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Run `pretrain` on num_workers Ray Train workers of the cluster RAY_ADDRESS names (else a local Ray);
    returns rank 0's summary. Raises UsageError for anything the user can fix, as `pretrain` does."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if num_workers < 1:
        raise UsageError(f"--num-workers must be >= 1, got {num_workers}")
    cfg = cfg.validate()
    if cfg.grad_accum % num_workers:
        raise UsageError(
            f"grad_accum {cfg.grad_accum} does not split over {num_workers} workers: the global batch is "
            f"batch_size x grad_accum, so grad_accum must be a multiple of --num-workers"
        )
    # the workers' working directory is not the caller's: local paths go absolute
    specs = [_absolute(s) for s in (data or cfg.data)]
    out_dir = out_dir if "://" in out_dir else os.path.abspath(out_dir)
    init_ray(dashboard=True)
    import ray

    outcomes = ray.remote(num_cpus=0)(_Outcomes).remote()
    check_paths_reachable([out_dir, *(parse_data_spec(s).url for s in specs)])
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "data": specs,
            "out_dir": out_dir,
            "resume": resume,
            "cache_dir": cache_dir,
            "outcomes": outcomes,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name=f"tokenmill-pretrain-{uuid.uuid4().hex[:8]}",
            # Ray Train's bookkeeping only; the checkpoints are in the run folder
            storage_path=os.path.join(tempfile.gettempdir(), "tokenmill-ray-train"),
            failure_config=FailureConfig(max_failures=0),
            worker_runtime_env={"env_vars": forwarded_env()},
        ),
    )
    trainer.fit()
    by_rank = ray.get(outcomes.get.remote())
    summary = by_rank.get(0) or next(iter(by_rank.values()), {"error": "no Ray Train worker finished"})
    if "error" in summary:
        raise UsageError(summary["error"])
    return summary
