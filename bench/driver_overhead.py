"""What the stage driver costs per task, over thousands of tiny inputs, against bare Ray in the same run.

Each input is a tiny text file; each task reads it and writes one small output file, so the work per task
is as small as a real task's bookkeeping. Measured:
  anchor    the same task body as plain Ray tasks: `ray.remote`, all submitted at once, `ray.get` of all;
  stage     run_stage: keys, fingerprints, the listing, bounded submission, commit records, index, stats;
  rerun     run_stage again: nothing to do, so this is the planning cost alone (one listing, the index).
Driver CPU seconds (time.process_time of this process) per task is the overhead the driver itself adds.

    python bench/driver_overhead.py [--tasks 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import storage  # noqa: E402
from pipeline.ray_cluster import init_ray  # noqa: E402
from pipeline.stage import Stage, TaskInput, TaskRun, input_key, run_stage  # noqa: E402


@dataclass(frozen=True)
class EchoConfig:
    suffix: str = "!"


def echo(source: str, target: str, suffix: str) -> int:
    data = storage.read_bytes(source) + suffix.encode()
    storage.write_bytes(target, data)
    return len(data)


def echo_task(run: TaskRun) -> None:
    run.stats.add("bytes_out", echo(run.input, run.output(f"part-{run.key}.txt"), run.config.suffix))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=5000)
    args = p.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "in")
        src.mkdir()
        for i in range(n):
            (src / f"doc-{i:06d}.txt").write_text(f"tiny input number {i}\n")
        init_ray()
        ray.get(ray.remote(lambda: 0).remote())  # workers up before anything is timed

        remote_echo = ray.remote(num_cpus=1)(echo)
        Path(tmp, "anchor").mkdir()
        _, a_wall, a_cpu = timed(
            lambda: ray.get(
                [
                    remote_echo.remote(str(src / f"doc-{i:06d}.txt"), f"{tmp}/anchor/out-{i:06d}.txt", "!")
                    for i in range(n)
                ]
            )
        )

        stage = Stage("echo", "1", echo_task, EchoConfig(), outputs=("part-*.txt",))

        def inputs() -> list[TaskInput]:
            return [
                TaskInput(input_key(fi.url), fi.url, fi.identity())
                for fi in storage.list_inputs(str(src), (".txt",))
            ]

        (ins, l_wall, l_cpu) = timed(inputs)
        result, s_wall, s_cpu = timed(lambda: run_stage(stage, ins, f"{tmp}/stage"))
        assert result.complete and result.stats.counters["bytes_out"] > 0
        again, r_wall, r_cpu = timed(lambda: run_stage(stage, inputs(), f"{tmp}/stage"))
        assert again.skipped == n

    ms = 1000 / n

    def row(label: str, wall: float, cpu: float) -> None:
        print(f"{label:<40} wall {wall:6.1f}s {wall * ms:6.2f} ms/task   driver CPU {cpu * ms:5.2f} ms/task")

    print(f"{n} tasks, {ray.cluster_resources().get('CPU')} CPUs, Ray {ray.__version__}")
    row("anchor (plain ray.remote + ray.get):", a_wall, a_cpu)
    row(f"listing the {n} inputs:", l_wall, l_cpu)
    row("run_stage (first run):", s_wall, s_cpu)
    row("run_stage (rerun, all committed):", r_wall, r_cpu)
    print(
        f"ratio stage/anchor wall: {s_wall / a_wall:.2f}x; "
        f"driver CPU per task over the anchor's: {(s_cpu - a_cpu) * ms:+.2f} ms"
    )


if __name__ == "__main__":
    main()
