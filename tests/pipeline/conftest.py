"""Shared paths for the pipeline tests: fixtures in tests/data, the optional shared data folder."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = DATA / "bad"  # broken on purpose (tests/data/make_bad_inputs.py): good pages around each damage
SHARED = Path("/work/shared/data")

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="/work/shared/data is absent: the full-data checks run only on dev machines"
)


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def sample_responses():
    """The 22 responses of tests/data/sample-20.warc.gz (20 pages, one redirect, one PDF)."""
    from pipeline.stats import Stats
    from pipeline.warc import iter_warc_responses

    return list(iter_warc_responses(str(DATA / "sample-20.warc.gz"), Stats()))


@pytest.fixture(scope="session")
def sample_documents(sample_responses):
    """extract_document on every sample response: [(response, document, reason)]."""
    from pipeline.extract import extract_document

    return [(r, *extract_document(r, "sample-20.warc.gz")) for r in sample_responses]


@dataclass(frozen=True)
class _NoConfig:
    pass


def document_folder(parts: list[list], output: str) -> str:
    """A finished document stage folder holding `parts` (lists of Documents), one task per part."""
    from pipeline.stage import Stage, TaskInput, TaskRun, digest, run_stage

    def write(run: TaskRun) -> None:
        with run.documents() as sink:
            for doc in run.context[int(run.key)]:
                sink.keep(doc)

    inputs = [
        TaskInput(f"{i:04d}", output, {"docs": digest([d.to_row() for d in part])})
        for i, part in enumerate(parts)
    ]
    result = run_stage(Stage("documents", "1", write, _NoConfig(), context=parts), inputs, output)
    assert result.complete, result.failed
    return output
