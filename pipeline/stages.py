"""The document stages as Stage objects: what each task does with its input, and what identifies it.

extract: one task per WARC file. filter: one task per extract part. (dedup: pipeline/dedup_stages.py.)
Each stage's version names the libraries whose upgrade changes its output, so an upgrade is a change a
rerun notices rather than output silently mixed from two versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

from pipeline import extract as extraction
from pipeline import storage
from pipeline.config import UsageError
from pipeline.documents import read_documents
from pipeline.extract import ExtractConfig
from pipeline.filters import FilterConfig, build_filters, first_failure
from pipeline.stage import Stage, StageResult, TaskInput, TaskRun, input_key, run_stage
from pipeline.stage_folder import read_stage

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz")


def _versions(*packages: str) -> str:
    return " ".join(f"{p}={version(p)}" for p in packages)


# --- extract ----------------------------------------------------------------------------------------------


def warc_inputs(items: Sequence[str]) -> list[TaskInput]:
    """Files, folders (their WARC files) and globs, local or remote, each once, identified by one listing."""
    found: dict[str, storage.FileInfo] = {}
    for item in items:
        try:
            infos = storage.list_inputs(item, WARC_SUFFIXES)
        except FileNotFoundError:
            raise UsageError(f"no such input: {item}") from None
        if not infos:
            raise UsageError(f"no input files in {item} (looked for {', '.join(WARC_SUFFIXES)})")
        found.update((fi.url, fi) for fi in infos)
    return [TaskInput(input_key(url), url, fi.identity()) for url, fi in sorted(found.items())]


def _extract(run: TaskRun) -> None:
    with run.documents() as sink:
        extraction.extract_warc(run.input, sink, run.config)


def extract_stage(cfg: ExtractConfig) -> Stage:
    return Stage("extract", f"2 {_versions('trafilatura', 'fastwarc', 'resiliparse')}", _extract, cfg)


# --- filter -----------------------------------------------------------------------------------------------


def _filter(run: TaskRun) -> None:
    filters = build_filters(run.config)
    with run.documents() as sink:
        for doc in read_documents(run.input):
            sink.stats.add("docs_in")
            reason = first_failure(filters, doc)
            if reason is None:
                sink.keep(doc)
            else:
                sink.drop(doc, reason)


def filter_stage(cfg: FilterConfig) -> Stage:
    return Stage("filter", f"1 {_versions('datatrove', 'py3langid')}", _filter, cfg)


# --- the stages as a user runs them -----------------------------------------------------------------------


def extract(inputs: Sequence[str], output: str, cfg: ExtractConfig, overwrite: bool = False) -> StageResult:
    return run_stage(extract_stage(cfg), warc_inputs(inputs), output, overwrite=overwrite)


def filter_documents(input_dir: str, output: str, cfg: FilterConfig, overwrite: bool = False) -> StageResult:
    docs = read_stage(input_dir)
    return run_stage(filter_stage(cfg), docs.document_inputs(), output, overwrite=overwrite)
