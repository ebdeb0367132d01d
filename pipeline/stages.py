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
from pipeline.decontaminate import Decontaminator
from pipeline.documents import read_documents
from pipeline.extract import ExtractConfig
from pipeline.filters import FilterChain, FilterConfig, first_reason
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
    return Stage("extract", f"3 {_versions('trafilatura', 'fastwarc', 'resiliparse')}", _extract, cfg)


# --- filter -----------------------------------------------------------------------------------------------


def _filter(run: TaskRun) -> None:
    chain = FilterChain(run.config)
    with run.documents() as sink:
        stats = sink.stats
        for doc in read_documents(run.input):
            stats.add("docs_in")
            reason = first_reason(chain.judge(doc))
            scores = doc.metadata["filter"]
            stats.add("unicode_repaired", int(scores.get("unicode_repaired", False)))
            for skipped in scores.get("skipped", ()):
                stats.add(f"skipped {skipped.split(':')[0]}")
            if reason is not None:
                sink.drop(doc, reason)
                continue
            stats.add("c4_lines_removed", scores.get("c4", {}).get("lines_removed", 0))
            if scores.get("decontamination", {}).get("ngrams"):
                stats.add("decontamination_marked")
            for kind, n in chain.redact(doc).items():
                stats.add(f"pii_{kind}", n)
            sink.keep(doc)


def filter_stage(cfg: FilterConfig) -> Stage:
    versions = _versions("datatrove", "py3langid", "ftfy", "tldextract", "pyahocorasick", "phonenumbers")
    if cfg.decontamination.files:  # the evaluation sets' content, not only their paths
        versions += f" decontamination={Decontaminator.from_config(cfg.decontamination).fingerprint}"
    return Stage("filter", f"2 {versions}", _filter, cfg)


# --- the stages as a user runs them -----------------------------------------------------------------------


def extract(inputs: Sequence[str], output: str, cfg: ExtractConfig, overwrite: bool = False) -> StageResult:
    return run_stage(extract_stage(cfg), warc_inputs(inputs), output, overwrite=overwrite)


def filter_documents(input_dir: str, output: str, cfg: FilterConfig, overwrite: bool = False) -> StageResult:
    docs = read_stage(input_dir)
    return run_stage(filter_stage(cfg), docs.document_inputs(), output, overwrite=overwrite)
