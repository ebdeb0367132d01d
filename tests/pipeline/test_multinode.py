"""A stage on a two-node Ray cluster (ray.cluster_utils.Cluster, both nodes on this machine).

A local output path is refused with the fix named: every node would write its own disk. With s3:// (the
session's SeaweedFS) the same stage runs, its tasks spread over both nodes. The cluster lives in a
subprocess so it does not disturb the session's Ray connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pipeline import storage
from tests.conftest import REPO, without_ray_address

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = cluster.address

    from pipeline import storage
    from pipeline.config import UsageError
    from pipeline.stage import TaskInput, input_key, run_stage
    from tests.pipeline.test_stage import lines_stage

    source, local_out, s3_out = sys.argv[1:]
    files = storage.list_inputs(source, (".txt",))
    inputs = [TaskInput(input_key(f.url), f.url, f.identity()) for f in files]
    report = {}
    try:
        run_stage(lines_stage(), inputs, local_out)
        report["local"] = "ran"
    except UsageError as e:
        report["local"] = str(e)
    result = run_stage(lines_stage(), inputs, s3_out)
    nodes = [k for k in result.stats.counters if k.startswith("node_")]  # the test stage counts them
    report["s3"] = {"complete": result.complete, "docs_out": result.stats.counters["docs_out"],
                    "nodes": len(nodes)}
    print(json.dumps(report))
    import ray

    ray.shutdown()
    cluster.shutdown()
    """
)


def test_local_output_refused_on_two_nodes_and_s3_spreads_over_both(s3_url, tmp_path):
    for i in range(8):
        storage.write_bytes(f"{s3_url}/in/file{i}.txt", f"first line of {i}\nok\nlast line\n".encode())
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"{s3_url}/in", str(tmp_path / "out"), f"{s3_url}/out"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=without_ray_address(),  # the script starts its own cluster
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "local path, but this Ray cluster has 2 nodes" in report["local"]
    assert "s3://" in report["local"] and "TOKENMILL_SHARED_FS=1" in report["local"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))
    assert report["s3"] == {"complete": True, "docs_out": 16, "nodes": 2}  # "ok" is too short
