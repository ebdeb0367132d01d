"""Dedup at scale: tokenmill's whole dedup stage against Data-Juicer's Ray MinHash dedup, and its memory.

Corpus: N documents of ~7 KB built (seeded, cached under --work) from the real sentences of the 1,358
WCXB dev pages (../shared/data/extraction/wcxb-dev-truth.jsonl.gz): each paragraph is a run of 2-6
consecutive sentences from a random place; ~5% of documents are exact copies of an earlier original
(some lowercased or with whitespace changed), ~10% near copies (0.5-2% of words replaced, deleted or
inserted: word-5-gram Jaccard ~0.8-0.98). The pool is ~110k distinct sentences (6-80 words), so every
sentence recurs in many documents, but two unrelated documents seldom share a run (Jaccard < 0.1): the
expected output is the originals (copies near 0.8 may stay: tokenmill verifies its threshold of 0.8).
Written as a tokenmill stage folder (a `corpus` Stage run by run_stage, 5,000 documents per part) and,
for the speed test, as one JSONL file ({"text", "id"}) for Data-Juicer.

Speed (--docs, default 20,000; --pairs A/B pairs, order alternating): wall time of one fresh process each,
from its start (interpreter, Ray start) to its exit after the output is written, 2 CPUs each
(RAY_OVERRIDE_RESOURCES={"CPU": 2}, and pinned to 2 cores on a larger machine), no RAY_ADDRESS, every run
into a fresh folder:
    .venv/bin/tokenmill dedup CORPUS/docs --output OUT
    DJ_VENV/bin/dj-process --config dj.yaml   # executor_type: ray, ray_address: local, export jsonl,
        # ray_bts_minhash_deduplicator: tokenization space, window_size 5, lowercase, 14 bands x 8 rows,
        # num_permutations 112 (its default 256 would compute 144 signature rows its bands never read)
Data-Juicer is installed by this bench in its own venv (default ~/.cache/tokenmill-bench/data-juicer-1.6.1):
    pip install torch==2.13.0 py-data-juicer==1.6.1 "ray[default]==<tokenmill's Ray>" "pandas<3"
(Ray is not a dependency of py-data-juicer; without it DJ pip-installs an unpinned Ray at run time; its
`distributed` extra asks ray[default]>=2.51 and pandas<3, and also pyspark, which the Ray path needs not.)
As shipped, it starts its local Ray with the dashboard; tokenmill starts its own without.

Memory (--memory-docs, default 50,000,200,000; tokenmill only): RSS of every process of the run's process
tree (driver, Ray workers, raylet, gcs, agents) sampled every 0.2 s; the figure is the largest peak of a
single driver or worker process, Ray's own daemons reported beside it.

    .venv/bin/python bench/dedup_scale.py                      # speed (3 pairs), memory: ~30 min on 2 cores
    .venv/bin/python bench/dedup_scale.py --only speed --pairs 1
    .venv/bin/python bench/dedup_scale.py --only memory --memory-docs 50000,200000 --work /tmp/dedup-scale
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import psutil
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TRUTH = REPO.parent / "shared/data/extraction/wcxb-dev-truth.jsonl.gz"
CPUS = 2
PART_DOCS = 5000
DJ_VERSION = "1.6.1"
DJ_VENV = Path.home() / f".cache/tokenmill-bench/data-juicer-{DJ_VERSION}"
DJ_CONFIG = """\
project_name: dedup-scale
dataset_path: {data}
export_path: {out}/result.jsonl
work_dir: {out}/work
executor_type: ray
ray_address: local
np: {cpus}
text_keys: text
process:
  - ray_bts_minhash_deduplicator:
      tokenization: space
      window_size: 5
      lowercase: true
      num_permutations: 112
      num_bands: 14
      num_rows_per_band: 8
"""
TOKENMILL_HELP = (
    "run as TOKENMILL dedup DIR --output OUT; 'env -C CHECKOUT VENV/bin/python -m jobs.cli': a checkout"
)
DAEMONS = ("gcs", "raylet", "dashboard", "dashboard-agent", "runtime-env-agent", "log-monitor", "monitor")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the corpus ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusConfig:
    docs: int
    seed: int = 0
    doc_chars: int = 7000
    exact_rate: float = 0.05
    near_rate: float = 0.10
    min_edit: float = 0.005
    max_edit: float = 0.02


def load_sentences(path: Path = TRUTH) -> list[str]:
    """Distinct sentences of 6-80 words of the pages' main content, in page order."""
    seen: dict[str, None] = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            for para in (json.loads(line)["main_content"] or "").split("\n"):
                for s in re.split(r"(?<=[.!?])\s+", para.strip()):
                    if 6 <= len(s.split()) <= 80:
                        seen.setdefault(s, None)
    return list(seen)


def doc_kind(cfg: CorpusConfig, i: int) -> str:
    u = random.Random(f"{cfg.seed}:kind:{i}").random() if i else 1.0
    return "exact" if u < cfg.exact_rate else "near" if u < cfg.exact_rate + cfg.near_rate else "original"


def original_text(cfg: CorpusConfig, i: int, sents: list[str]) -> str:
    rng = random.Random(f"{cfg.seed}:text:{i}")
    target, paras, size = rng.randint(cfg.doc_chars * 4 // 5, cfg.doc_chars * 6 // 5), [], 0
    while size < target:
        n = rng.randint(2, 6)
        start = rng.randrange(len(sents) - n)
        paras.append(" ".join(sents[start : start + n]))
        size += len(paras[-1]) + 2
    return "\n\n".join(paras)


def document_text(cfg: CorpusConfig, i: int, sents: list[str]) -> str:
    """Document i, from the seed and i alone: an original, or a copy of an earlier original."""
    kind = doc_kind(cfg, i)
    if kind == "original":
        return original_text(cfg, i, sents)
    rng = random.Random(f"{cfg.seed}:copy:{i}")
    src = rng.randrange(i)
    while doc_kind(cfg, src) != "original":
        src = rng.randrange(i)
    text = original_text(cfg, src, sents)
    if kind == "exact":
        return rng.choice([text, text.lower(), text.replace("\n\n", "\n \n") + "\n"])
    rate, words = rng.uniform(cfg.min_edit, cfg.max_edit), []
    for w in text.split(" "):
        u = rng.random()
        if u >= rate:
            words.append(w)
        elif u < rate / 3:  # replaced
            words.append(rng.choice(rng.choice(sents).split()))
        elif u < 2 * rate / 3:  # inserted after
            words += [w, rng.choice(rng.choice(sents).split())]
    return " ".join(words)  # the last third of edits: deleted


def _corpus_task(run) -> None:  # a Ray task: documents of part int(run.key)
    from pipeline.documents import Document

    cfg, first = run.config, int(run.key) * PART_DOCS
    with run.documents() as sink:
        for i in range(first, min(first + PART_DOCS, cfg.docs)):
            sink.keep(
                Document(f"doc-{i:07d}", document_text(cfg, i, run.context), f"bench://dedup-scale/{i}")
            )


def build_corpus(work: Path, n: int, jsonl: bool) -> Path:
    """WORK/corpus-N/docs (a tokenmill stage folder) and corpus.jsonl; reused when complete."""
    cfg = CorpusConfig(n)
    root = work / f"corpus-{n}-s{cfg.seed}"
    done = root / "corpus.json"
    meta = json.loads(done.read_text()) if done.exists() else None
    if meta is None or meta["config"] != cfg.__dict__:
        import ray

        from pipeline.stage import Stage, run_stage
        from pipeline.stage_folder import TaskInput

        shutil.rmtree(root, ignore_errors=True)
        log(f"building {n} documents in {root} ...")
        stage = Stage("corpus", "1", _corpus_task, cfg, context=load_sentences())
        parts = [TaskInput(f"{p:04d}", str(TRUTH), {"part": p}) for p in range(-(-n // PART_DOCS))]
        result = run_stage(stage, parts, str(root / "docs"))
        ray.shutdown()
        if not result.complete:
            sys.exit(f"corpus build failed: {result.failed}")
        kinds = [doc_kind(cfg, i) for i in range(n)]
        meta = {"config": cfg.__dict__, **{k: kinds.count(k) for k in ("original", "exact", "near")}}
        done.write_text(json.dumps(meta))
    if jsonl and not (root / "corpus.jsonl").exists():
        tmp = root / "corpus.jsonl.tmp"
        with open(tmp, "w") as f:
            for part in sorted((root / "docs").glob("part-*.parquet")):
                for row in pq.read_table(part, columns=["id", "text"]).to_pylist():
                    f.write(json.dumps({"text": row["text"], "id": row["id"]}, ensure_ascii=False) + "\n")
        tmp.rename(root / "corpus.jsonl")
    return root


# --- running and measuring one process tree -----------------------------------------------------------------


def process_kind(p: psutil.Process, root: int, parent_kind: str | None) -> str:
    """driver, worker (tasks and actors), or which Ray daemon; helpers of a daemon count as that daemon."""
    if p.pid == root:
        return "driver"
    cmd = p.cmdline() or [p.name()]
    if (exe := os.path.basename(cmd[0])) in ("gcs_server", "raylet"):  # or a fork of it not yet exec'd
        return "gcs" if exe == "gcs_server" else "raylet"
    cmd = " ".join(cmd[:4])
    for needle, kind in (
        ("ray::DashboardAgent", "dashboard-agent"),
        ("ray::RuntimeEnvAgent", "runtime-env-agent"),
        ("ray::", "worker"),
        ("default_worker.py", "worker"),
        ("runtime_env/agent", "runtime-env-agent"),
        ("dashboard/agent.py", "dashboard-agent"),
        ("log_monitor.py", "log-monitor"),
        ("ray-dashboard-", "dashboard"),
        ("dashboard.py", "dashboard"),
        ("monitor.py", "monitor"),
    ):
        if needle in cmd:
            return kind
    return parent_kind if parent_kind in DAEMONS else f"other:{p.name()}"


def _pin() -> None:  # at most CPUS cores on a larger machine (Ray is told CPUS either way)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > CPUS:
        os.sched_setaffinity(0, cpus[:CPUS])


def measure(cmd: list[str], logfile: Path) -> dict:
    """Run `cmd` to the end; its wall seconds and each process kind's peak RSS (MB) and pid."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_OVERRIDE_RESOURCES=json.dumps({"CPU": CPUS}), RAY_USAGE_STATS_ENABLED="0")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")  # a download would fail, not happen
    peaks: dict[int, list] = {}  # pid -> [kind, peak rss, peak rss - shared]
    start = time.perf_counter()
    with open(logfile, "w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_pin)
        while proc.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    # a process's last kind counts: a worker is first a fork of the raylet, an agent is
                    # renamed once started
                    kind = process_kind(p, proc.pid, peaks.get(p.ppid(), [None])[0])
                    m, entry = p.memory_info(), peaks.setdefault(p.pid, [kind, 0, 0])
                    entry[0] = kind
                    entry[1], entry[2] = max(entry[1], m.rss), max(entry[2], m.rss - m.shared)
                except psutil.Error:
                    pass
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{logfile.read_text()[-3000:]}")
    time.sleep(3)  # let the run's Ray daemons exit before the next run starts
    by_kind: dict[str, dict] = {}
    for pid, (kind, rss, private) in peaks.items():
        row = by_kind.setdefault(kind, {"processes": 0, "peak_rss_mb": 0.0, "peak_private_mb": 0.0})
        row["processes"] += 1
        if rss / 2**20 > row["peak_rss_mb"]:
            row.update(peak_rss_mb=round(rss / 2**20, 1), pid=pid)
        row["peak_private_mb"] = max(row["peak_private_mb"], round(private / 2**20, 1))
    app = {k: v for k, v in by_kind.items() if k in ("driver", "worker")}
    largest = max(app, key=lambda k: app[k]["peak_rss_mb"], default="driver")
    daemon = max((k for k in by_kind if k in DAEMONS), key=lambda k: by_kind[k]["peak_rss_mb"], default=None)
    return {
        "seconds": round(seconds, 2),
        "largest": largest,
        "largest_mb": app.get(largest, {}).get("peak_rss_mb", 0.0),
        "largest_daemon": daemon,
        "largest_daemon_mb": by_kind[daemon]["peak_rss_mb"] if daemon else 0.0,
        "by_kind": by_kind,
    }


def run_ours(tokenmill: list[str], corpus: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    row = measure([*tokenmill, "dedup", str(corpus / "docs"), "--output", str(out)], out.with_suffix(".log"))
    row["docs_out"] = sum(pq.read_metadata(p).num_rows for p in out.glob("part-*.parquet"))
    shutil.rmtree(out)
    return row


def ensure_dj(venv: Path) -> Path:
    """A venv with Data-Juicer and the Ray tokenmill uses; created (pip) when missing or wrong."""
    ray_version, py = version("ray"), venv / "bin/python"
    probe = "import data_juicer, ray; print(data_juicer.__version__, ray.__version__)"
    have = subprocess.run([str(py), "-c", probe], capture_output=True, text=True) if py.exists() else None
    if have is None or have.returncode or have.stdout.split() != [DJ_VERSION, ray_version]:
        log(f"installing Data-Juicer {DJ_VERSION} into {venv} ...")
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = ["torch==2.13.0", f"py-data-juicer=={DJ_VERSION}", f"ray[default]=={ray_version}", "pandas<3"]
        subprocess.run([str(py), "-m", "pip", "install", "-q", *pins], check=True)
    return venv / "bin/dj-process"


def run_dj(dj: Path, corpus: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = out / "dj.yaml"
    config.write_text(DJ_CONFIG.format(data=corpus / "corpus.jsonl", out=out, cpus=CPUS))
    logfile = out.with_suffix(".log")
    row = measure([str(dj), "--config", str(config)], logfile)
    row["docs_out"] = sum(1 for f in (out / "result.jsonl").glob("*.json*") for _ in open(f))
    if m := re.search(r"Running executor took ([\d.]+) seconds", logfile.read_text()):
        row["dj_reported_executor_s"] = float(m[1])
    shutil.rmtree(out)
    return row


# --- the bench ----------------------------------------------------------------------------------------------


def speed(args: argparse.Namespace, tokenmill: list[str]) -> dict:
    dj = ensure_dj(args.dj_venv)
    corpus = build_corpus(args.work, args.docs, jsonl=True)
    meta = json.loads((corpus / "corpus.json").read_text())
    runs: dict[str, list[dict]] = {"dj": [], "ours": []}
    for k in range(args.pairs):
        for who in ("dj", "ours") if k % 2 == 0 else ("ours", "dj"):
            out = args.work / "runs" / f"{who}-{args.docs}-{k}"
            row = run_dj(dj, corpus, out) if who == "dj" else run_ours(tokenmill, corpus, out)
            runs[who].append(row)
            log(f"  pair {k + 1} {who:>4}: {row['seconds']:7.1f} s, {row['docs_out']} docs out")
    med = {who: round(statistics.median(r["seconds"] for r in rows), 2) for who, rows in runs.items()}
    ratio = round(med["dj"] / med["ours"], 2)
    return {"docs": args.docs, "planted": meta, "median_s": med, "ratio_dj_over_ours": ratio, "runs": runs}


def memory(args: argparse.Namespace, tokenmill: list[str]) -> dict:
    rows = {}
    for n in args.memory_docs:
        corpus = build_corpus(args.work, n, jsonl=False)
        row = run_ours(tokenmill, corpus, args.work / "runs" / f"ours-mem-{n}")
        row["mb_per_doc"] = row["largest_mb"] / n
        rows[n] = row
        log(f"  {n} docs: {row['seconds']:.0f} s, largest {row['largest']} {row['largest_mb']:.0f} MB")
    lo, hi = rows[min(rows)]["largest_mb"], rows[max(rows)]["largest_mb"]
    extra = max(rows) - min(rows)
    marginal = (hi - lo) / extra if extra else 0.0
    growth = max(rows) / min(rows)
    runs = {str(n): r for n, r in rows.items()}
    return {"runs": runs, "growth_docs": growth, "ratio": round(hi / lo, 3), "marginal_mb_per_doc": marginal}


def report(result: dict) -> None:
    if s := result.get("speed"):
        p = s["planted"]
        print(
            f"\nspeed: {s['docs']} docs ({p['original']} originals, {p['exact']} exact and {p['near']} near "
            f"copies planted), {CPUS} CPUs each, median of {len(s['runs']['dj'])}, process start to exit"
        )
        print(f"  {'':12} {'median s':>9} {'docs out':>9} {'largest driver/worker':>22} {'Ray daemon':>20}")
        for who, name in (("dj", "Data-Juicer"), ("ours", "tokenmill")):
            r = s["runs"][who][-1]
            print(
                f"  {name:12} {s['median_s'][who]:9.1f} {r['docs_out']:9d} "
                f"{r['largest_mb']:14.0f} MB {r['largest']:>6} {r['largest_daemon_mb']:10.0f} MB "
                f"{r['largest_daemon'] or '-':>8}"
            )
        ok = "PASS" if s["ratio_dj_over_ours"] >= 3 else "FAIL"
        print(f"  Data-Juicer / tokenmill: {s['ratio_dj_over_ours']:.2f}x   (target >= 3x: {ok})")
    if m := result.get("memory"):
        print("\nmemory: tokenmill dedup, peak RSS of the largest single driver or worker process")
        for n, r in m["runs"].items():
            top = ", the largest process" if r["largest_daemon_mb"] > r["largest_mb"] else ""
            print(
                f"  {n:>7} docs: {r['largest_mb']:6.0f} MB ({r['largest']}), {r['mb_per_doc'] * 1e3:.2f} "
                f"KB/doc, {r['seconds']:.0f} s; largest Ray daemon {r['largest_daemon_mb']:.0f} MB "
                f"({r['largest_daemon']}{top})"
            )
        ok = "PASS" if m["ratio"] <= 1.5 else "FAIL"
        print(
            f"  {m['growth_docs']:.0f}x the documents: {m['ratio']:.2f}x the peak (target <= 1.5x: {ok}); "
            f"marginal {m['marginal_mb_per_doc'] * 1e3:.3f} KB per extra document"
        )
    print(json.dumps(result, default=str))


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    p.add_argument("--docs", type=int, default=20000, help="documents of the speed corpus")
    p.add_argument("--memory-docs", default="50000,200000", help="corpus sizes of the memory runs")
    p.add_argument("--pairs", type=int, default=3, help="Data-Juicer/tokenmill pairs of the speed test")
    p.add_argument("--only", choices=("speed", "memory", "both"), default="both", help="which test to run")
    p.add_argument("--work", type=Path, default=Path("/tmp/tokenmill-dedup-scale"), help="corpora and runs")
    p.add_argument("--dj-venv", type=Path, default=DJ_VENV, help="Data-Juicer's venv, installed if needed")
    p.add_argument("--tokenmill", default=str(REPO / ".venv/bin/tokenmill"), help=TOKENMILL_HELP)
    args = p.parse_args()
    args.memory_docs = sorted(int(n) for n in args.memory_docs.split(","))
    if not TRUTH.exists():
        print(f"skipped: {TRUTH} not found (../shared/data is not here)")
        return
    os.environ.pop("RAY_ADDRESS", None)  # the corpus build starts a private local Ray too
    os.environ.setdefault("RAY_OVERRIDE_RESOURCES", json.dumps({"CPU": CPUS}))
    args.work.mkdir(parents=True, exist_ok=True)
    tokenmill, result = shlex.split(args.tokenmill), {}
    if args.only in ("both", "speed"):
        result["speed"] = speed(args, tokenmill)
    if args.only in ("both", "memory"):
        result["memory"] = memory(args, tokenmill)
    report(result)


if __name__ == "__main__":
    main()
