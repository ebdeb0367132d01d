"""Session-wide fixtures: one Ray head for the whole test session, on this machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Ray reads this when it is imported: the session's head (started with `ray start`) uses token authentication,
# Ray's default for local clusters since 2.59, and every client of it must say so.
os.environ["RAY_AUTH_MODE"] = "token"

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head() -> dict[str, str]:
    """Start a Ray head with `ray start` (the way a user's cluster starts) and point RAY_ADDRESS at it.

    In-process stage calls and CLI subprocesses connect through RAY_ADDRESS; the `ray job submit` test uses
    the dashboard address. One head serves the session (~10 s to start); `ray stop` ends it.
    """
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    gcs, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    old = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{gcs}"
    yield {"address": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "ray": ray_bin}
    import ray

    ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
    if old is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = old


def run_tokenmill(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `tokenmill` command (the console script users run) and capture its output."""
    exe = Path(sys.executable).parent / "tokenmill"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
