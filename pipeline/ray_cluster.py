"""Connecting to Ray, and what a stage must know about the cluster it runs on.

Without RAY_ADDRESS a command starts a private local Ray; with it (as `ray job submit` sets it) it joins
that cluster. On more than one node every path must be reachable from every node: a local path is
refused unless the user says it is a shared mount.
"""

from __future__ import annotations

import logging
import os

import ray

from pipeline.config import UsageError
from pipeline.storage import is_local

SHARED_FS_ENV = "TOKENMILL_SHARED_FS"  # "1": local paths are on a filesystem every node mounts alike
# Forwarded to task workers, so `AWS_ENDPOINT_URL=... tokenmill extract s3://...` works on any Ray: workers
# of a cluster started earlier do not have the driver's environment.
FORWARDED_ENV_PREFIXES = ("AWS_", "FSSPEC_", "S3FS_", "TOKENMILL_")


def init_ray(dashboard: bool = False) -> None:
    """Connect to the cluster named by RAY_ADDRESS (as `ray job submit` sets it) or start a local Ray, with
    its dashboard (on 127.0.0.1) when asked: Ray Train's controller watches its workers through the state
    API the dashboard serves."""
    if ray.is_initialized():
        return
    if address := os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address=address, logging_level="WARNING")
        except ConnectionError as e:
            raise ConnectionError(
                f"cannot connect to the Ray cluster at RAY_ADDRESS={address} ({e}); a cluster started with "
                "`ray start` uses token authentication: set RAY_AUTH_MODE=token on this side too"
            ) from None
    else:
        # Explicitly local (not Ray's auto-detect): without RAY_ADDRESS a command never joins a cluster it was
        # not pointed at. The dashboard is not needed to run tasks (Ray Train needs it).
        # Ray says at every local start that token authentication is on; for a private local Ray that is
        # noise, not news (the token protects it either way).
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(
            address="local",
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            logging_level="WARNING",
        )


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 1))


def check_paths_reachable(paths: list[str]) -> None:
    """On a multi-node cluster, refuse local paths: other nodes would write where no one reads."""
    local = [p for p in paths if is_local(p)]
    if not local or os.environ.get(SHARED_FS_ENV) == "1":
        return
    nodes = alive_nodes()
    if nodes > 1:
        raise UsageError(
            f"{local[0]} is a local path, but this Ray cluster has {nodes} nodes: each would read and write "
            f"its own disk. Use shared storage: an s3:// (or other fsspec) URL, or a filesystem every node "
            f"mounts at the same path (NFS, Lustre) and set {SHARED_FS_ENV}=1"
        )
