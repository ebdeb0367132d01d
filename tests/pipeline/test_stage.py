"""The stage runner: fingerprinted commits, what a rerun redoes or refuses, nothing stale left behind.

The stage here is a real one of the smallest kind: each input is a text file, each line a document, lines
shorter than `min_chars` dropped with a reason. It runs on the session's Ray like every stage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
import ray

from pipeline import storage
from pipeline.config import UsageError
from pipeline.documents import Document, read_documents
from pipeline.stage import Stage, TaskInput, TaskRun, input_key, run_stage
from pipeline.stage_folder import MERGED, read_stage

pytestmark = pytest.mark.usefixtures("ray_head")


@dataclass(frozen=True)
class LinesConfig:
    min_chars: int = 3


def lines_task(run: TaskRun) -> None:
    text = storage.read_bytes(run.input).decode()
    run.stats.add(f"node_{ray.get_runtime_context().get_node_id()[:12]}")  # where it ran (multi-node test)
    if text.startswith("FAIL"):
        raise ValueError("this input is broken on purpose")
    with run.documents() as sink:
        for n, line in enumerate(text.splitlines()):
            sink.stats.add("docs_in")
            doc = Document(id=f"{run.key}:{n}", text=line)
            if len(line) >= run.config.min_chars:
                sink.keep(doc)
            else:
                sink.drop(doc, "too_short")


def lines_stage(min_chars: int = 3) -> Stage:
    return Stage("lines", "1", lines_task, LinesConfig(min_chars))


def inputs_of(folder) -> list[TaskInput]:
    return [
        TaskInput(input_key(str(p)), str(p), storage.info(str(p)).identity())
        for p in sorted(folder.glob("*.txt"))
    ]


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"file{i}.txt").write_text("\n".join(["hello world", "ok", f"line {i}"]))
    return src


def mtimes(folder) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_run_commits_every_task_with_its_fingerprint(corpus, tmp_path):
    out = tmp_path / "out"
    result = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert result.complete and result.tasks == 4 and result.skipped == 0
    assert result.stats.counters["docs_in"] == 12 and result.stats.counters["docs_out"] == 8
    assert result.stats.dropped == {"too_short": 4}
    records = sorted(os.listdir(out / "completions"))
    assert len(records) == 4
    for name in records:
        key, fp = name.removesuffix(".json").rsplit(".", 1)
        record = json.loads((out / "completions" / name).read_text())
        assert record["key"] == key and record["fingerprint"] == fp and len(fp) == 24
        assert record["outputs"] == {
            f"part-{key}.parquet": (out / f"part-{key}.parquet").stat().st_size,
            f"excluded/part-{key}.parquet": (out / "excluded" / f"part-{key}.parquet").stat().st_size,
        }
    merged = json.loads((out / MERGED).read_text())
    assert merged["complete"] and merged["fingerprint"] == result.fingerprint and merged["stage"] == "lines"
    index = read_stage(str(out), expect="lines")
    assert [r["key"] for r in index.rows] == sorted(i.key for i in inputs_of(corpus))
    kept = [d.text for inp in index.document_inputs() for d in read_documents(inp.url)]
    assert sorted(kept) == sorted(["hello world"] * 4 + [f"line {i}" for i in range(4)])
    excluded = pq.read_table(out / "excluded").to_pylist()
    assert {r["reason"] for r in excluded} == {"too_short"} and len(excluded) == 4


def test_rerun_skips_without_touching_anything(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(), inputs_of(corpus), str(out))
    before = mtimes(out)
    again = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert again.skipped == again.tasks == 4 and again.stats.counters["docs_out"] == 8
    assert mtimes(out) == before  # not even the merged stats are rewritten


def test_adding_or_changing_an_input_redoes_only_that_task(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(), inputs_of(corpus), str(out))
    before = mtimes(out)
    (corpus / "file9.txt").write_text("a new file\nx")
    (corpus / "file0.txt").write_text("changed text here\nanother line")
    result = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert result.tasks == 5 and result.skipped == 3 and result.redone == 1
    after = mtimes(out)
    untouched = [input_key(str(corpus / f"file{i}.txt")) for i in (1, 2, 3)]
    for key in untouched:
        assert after[f"part-{key}.parquet"] == before[f"part-{key}.parquet"]
    key0 = input_key(str(corpus / "file0.txt"))
    texts = [d.text for d in read_documents(str(out / f"part-{key0}.parquet"))]
    assert texts == ["changed text here", "another line"]
    assert len(os.listdir(out / "completions")) == 5  # the old record of file0 is gone
    assert result.stats.counters["docs_out"] == 2 + 6 + 1


def test_changed_config_is_refused_then_redone_with_overwrite(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(min_chars=3), inputs_of(corpus), str(out))
    with pytest.raises(UsageError, match=r"min_chars 3 -> 1.*--overwrite"):
        run_stage(lines_stage(min_chars=1), inputs_of(corpus), str(out))
    result = run_stage(lines_stage(min_chars=1), inputs_of(corpus), str(out), overwrite=True)
    assert result.redone == 4 and result.stats.counters["docs_out"] == 12 and not result.stats.dropped
    assert len(os.listdir(out / "completions")) == 4


def test_removed_input_is_refused_then_its_files_removed(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(), inputs_of(corpus), str(out))
    gone = input_key(str(corpus / "file3.txt"))
    (corpus / "file3.txt").unlink()
    with pytest.raises(UsageError, match=rf"no longer given \(e.g. {gone}\)"):
        run_stage(lines_stage(), inputs_of(corpus), str(out))
    result = run_stage(lines_stage(), inputs_of(corpus), str(out), overwrite=True)
    assert result.removed == 1 and result.tasks == 3 and result.stats.counters["docs_out"] == 6
    left = {str(p.relative_to(out)) for p in out.rglob("*.parquet")} - {"stats/tasks.parquet"}
    assert not any(gone in name for name in left) and len(left) == 6
    assert len(read_stage(str(out)).rows) == 3


def test_uncommitted_and_temporary_files_are_cleaned(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(), inputs_of(corpus), str(out))
    key = input_key(str(corpus / "file1.txt"))
    record = next((out / "completions").glob(f"{key}.*.json"))
    record.unlink()  # as if the task had died before its commit
    (out / f"part-{key}.parquet").write_bytes(b"half a file")
    (out / "part-x.parquet.tmp-0123456789ab").write_bytes(b"an attempt's temp file")
    (out / "part-orphan-00000000.parquet").write_bytes(b"no record claims it")
    result = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert result.skipped == 3 and result.complete
    assert not list(out.rglob("*.tmp-*")) and not (out / "part-orphan-00000000.parquet").exists()
    assert [d.text for d in read_documents(str(out / f"part-{key}.parquet"))] == ["hello world", "line 1"]


def test_failed_task_is_reported_and_the_folder_marked_incomplete(corpus, tmp_path):
    out = tmp_path / "out"
    (corpus / "file2.txt").write_text("FAIL\nmore")
    result = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert result.failed_total == 1 and "this input is broken on purpose" in result.failed[0]
    assert "file2.txt" in result.failed[0] and not result.complete
    assert len(os.listdir(out / "completions")) == 3
    with pytest.raises(UsageError, match="incomplete .1 task.s. failed."):
        read_stage(str(out))
    (corpus / "file2.txt").write_text("fixed now\nok")
    again = run_stage(lines_stage(), inputs_of(corpus), str(out))
    assert again.complete and again.skipped == 3 and len(read_stage(str(out)).rows) == 4


def test_a_folder_of_another_stage_or_owner_is_refused(corpus, tmp_path):
    out = tmp_path / "out"
    run_stage(lines_stage(), inputs_of(corpus), str(out))
    other = Stage("other", "1", lines_task, LinesConfig())
    with pytest.raises(UsageError, match="holds the output of stage 'lines'"):
        run_stage(other, inputs_of(corpus), str(out))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "part-00000.parquet").write_bytes(b"someone else's")
    with pytest.raises(UsageError, match="not from tokenmill"):
        run_stage(lines_stage(), inputs_of(corpus), str(foreign))
    assert (foreign / "part-00000.parquet").read_bytes() == b"someone else's"


def test_many_tasks_with_few_in_flight(tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:03d}.txt").write_text(f"document number {i}\n")
    result = run_stage(lines_stage(), inputs_of(src), str(tmp_path / "out"), max_in_flight=3)
    assert result.complete and result.tasks == 60 and result.stats.counters["docs_out"] == 60
