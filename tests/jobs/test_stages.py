"""The data stages end to end on real pages, through a real Ray (the session's head)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest

from pipeline.config import UsageError
from pipeline.dedup import DedupConfig
from pipeline.dedup_stages import dedup
from pipeline.documents import Document, read_documents
from pipeline.extract import ExtractConfig
from pipeline.filters import FilterConfig
from pipeline.language import LanguageConfig
from pipeline.stage import Stage, TaskRun, run_stage
from pipeline.stage_folder import TaskInput, read_stage
from pipeline.stages import extract, filter_documents
from tests.conftest import DATA, REPO, run_tokenmill
from tokenizer.shards import read_shard
from tokenizer.tokenize import TokenizeConfig, tokenize
from tokenizer.train import TokenizerConfig, train_tokenizer

SAMPLE = str(DATA / "sample-20.warc.gz")


def _count_responses(path: str) -> int:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as f:
        return sum(1 for _ in ArchiveIterator(f, record_types=WarcRecordType.response))


@pytest.fixture(scope="module")
def stages(ray_head, tmp_path_factory):
    """extract -> filter -> dedup -> train-tokenizer -> tokenize on the 20-page fixture, once per module."""
    out = tmp_path_factory.mktemp("stages")
    results = {
        "extract": extract([SAMPLE], f"{out}/extract", ExtractConfig()),
        "filter": filter_documents(f"{out}/extract", f"{out}/filter", FilterConfig()),
        "dedup": dedup(f"{out}/filter", f"{out}/dedup", DedupConfig()),
    }
    tok = train_tokenizer(f"{out}/dedup", f"{out}/tok/tokenizer.json", TokenizerConfig(vocab_size=512))
    results["train-tokenizer"] = tok
    results["tokenize"] = tokenize(
        f"{out}/dedup", f"{out}/tok/tokenizer.json", f"{out}/shards", TokenizeConfig(val_fraction=0.2)
    )
    assert all(r.complete for name, r in results.items() if name != "train-tokenizer")
    return out, results


def part_files(folder) -> list[str]:
    return [inp.url for inp in read_stage(str(folder)).document_inputs()]


def test_counts_chain_and_nothing_disappears(stages):
    out, r = stages
    for name in ("extract", "filter", "dedup", "tokenize"):
        assert not r[name].failed, r[name].failed
    ex = r["extract"].stats
    assert ex.counters["docs_in"] == _count_responses(SAMPLE)  # every response record becomes a document
    assert ex.counters["docs_out"] >= 15
    # every document in is either kept or excluded with a reason, at every stage
    for name, folder in (("extract", "extract"), ("filter", "filter"), ("dedup", "dedup")):
        stats = r[name].stats
        kept = sum(1 for p in (out / folder).glob("part-*.parquet") for _ in read_documents(str(p)))
        excluded = (
            pq.read_table(out / folder / "excluded").to_pylist()
            if (out / folder / "excluded").exists()
            else []
        )
        assert kept == stats.counters["docs_out"]
        assert kept + len(excluded) == stats.counters["docs_in"], name
        assert all(row["reason"] for row in excluded)
    assert r["filter"].stats.counters["docs_in"] == ex.counters["docs_out"]
    assert r["dedup"].stats.counters["docs_in"] == r["filter"].stats.counters["docs_out"]
    # language scores are recorded in metadata of kept documents
    doc = next(read_documents(part_files(out / "filter")[0]))
    assert doc.metadata["language"] == "en" and doc.metadata["language_score"] > 0.5


def test_shards_readable_with_plain_pyarrow(stages):
    """No tokenmill import: a user's script with pyarrow alone reads the shards and checks the manifest."""
    out, r = stages
    script = textwrap.dedent(
        f"""
        import hashlib, json, os, sys
        import pyarrow as pa
        folder = {str(out / "shards")!r}
        m = json.load(open(os.path.join(folder, "manifest.json")))
        assert m["format"] == "tokenmill-shards" and m["dtype"] == "uint16", m
        tok = os.path.join(folder, m["tokenizer"]["file"])
        assert hashlib.sha256(open(tok, "rb").read()).hexdigest() == m["tokenizer"]["sha256"]
        docs = tokens = 0
        for split in ("train", "val"):
            for s in m["splits"][split]:
                path = os.path.join(folder, s["file"])
                assert hashlib.sha256(open(path, "rb").read()).hexdigest() == s["sha256"]
                table = pa.ipc.open_file(pa.memory_map(path)).read_all()
                assert table.schema.field("tokens").type == pa.list_(pa.uint16())
                assert table.num_rows == s["num_docs"]
                n = sum(len(t) for t in table.column("tokens").to_pylist())
                assert n == s["num_tokens"]
                eos = m["tokenizer"]["eos_id"]
                assert all(t[-1] == eos for t in table.column("tokens").to_pylist())
                docs += s["num_docs"]; tokens += n
        assert docs == m["totals"]["all"]["num_docs"] and tokens == m["totals"]["all"]["num_tokens"]
        print(docs, tokens)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs, tokens = map(int, done.stdout.split())
    assert docs == r["dedup"].stats.counters["docs_out"]
    assert tokens > 1000


def test_shards_read_with_polars_and_hf_datasets_and_their_tokenizer_with_transformers(stages, tmp_path):
    """No tokenmill import: polars, HF datasets and transformers read the folder as users would."""
    out, r = stages
    script = textwrap.dedent(
        f"""
        import glob, json, os
        import polars as pl
        from datasets import load_dataset
        from transformers import PreTrainedTokenizerFast
        folder = {str(out / "shards")!r}
        m = json.load(open(os.path.join(folder, "manifest.json")))
        train = [os.path.join(folder, s["file"]) for s in m["splits"]["train"]]
        val = [os.path.join(folder, s["file"]) for s in m["splits"]["val"]]
        lengths = pl.scan_ipc(train).select(pl.col("tokens").list.len()).collect()["tokens"]
        assert lengths.sum() == m["totals"]["train"]["num_tokens"], lengths.sum()
        files = {{"train": train, "validation": val}}
        ds = load_dataset("arrow", data_files=files, cache_dir={str(tmp_path)!r})
        assert ds["train"].num_rows == m["totals"]["train"]["num_docs"]
        assert ds["validation"].num_rows == m["totals"]["val"]["num_docs"]
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
        first = ds["train"][0]["tokens"]
        assert first[-1] == m["tokenizer"]["eos_id"] == tok.convert_tokens_to_ids("<|endoftext|>")
        print(tok.decode(first[:-1])[:200])
        """
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    first = read_shard(
        str(
            out
            / "shards"
            / json.loads((out / "shards" / "manifest.json").read_text())["splits"]["train"][0]["file"]
        )
    )
    texts = {d.id: d.text for d in read_documents(part_files(out / "dedup")[0])}
    assert done.stdout.strip() == texts[first.doc_ids[0].as_py()][:200].strip()


def test_doc_ids_trace_back_to_warc_records(stages):
    out, _ = stages
    import pyarrow as pa

    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    shard = manifest["splits"]["train"][0]["file"]
    ids = pa.ipc.open_file(pa.memory_map(str(out / "shards" / shard))).read_all().column("doc_id").to_pylist()
    extracted = {d.id: d for d in read_documents(part_files(out / "extract")[0])}
    for doc_id in ids:
        assert doc_id.startswith("<urn:uuid:")
        assert extracted[doc_id].warc_file.endswith("sample-20.warc.gz")


def test_rerun_resumes_without_redoing_work(stages):
    out, r = stages
    again = filter_documents(f"{out}/extract", f"{out}/filter", FilterConfig())
    assert again.skipped == again.tasks == r["filter"].tasks
    assert again.stats.counters["docs_out"] == r["filter"].stats.counters["docs_out"]
    tok = TokenizerConfig(vocab_size=512)
    assert train_tokenizer(f"{out}/dedup", f"{out}/tok/tokenizer.json", tok).get("skipped")


def test_changed_config_is_named_not_reused(stages):
    out, _ = stages
    with pytest.raises(UsageError, match=r"language\.min_score 0.65 -> 0.5"):
        cfg = FilterConfig(language=LanguageConfig(min_score=0.5))
        filter_documents(f"{out}/extract", f"{out}/filter", cfg)
    with pytest.raises(UsageError, match="vocab_size 512 -> 600"):
        train_tokenizer(f"{out}/dedup", f"{out}/tok/tokenizer.json", TokenizerConfig(vocab_size=600))


def test_same_warc_twice_keeps_one_copy_of_each_page(stages, tmp_path):
    """The same WARC under two names: every record id twice. Dedup keeps exactly one of each."""
    out, r = stages
    copy = tmp_path / "again.warc.gz"
    copy.write_bytes(open(SAMPLE, "rb").read())
    extract([SAMPLE, str(copy)], str(tmp_path / "extract"), ExtractConfig())
    result = dedup(str(tmp_path / "extract"), str(tmp_path / "dedup"), DedupConfig())
    kept = r["extract"].stats.counters["docs_out"]
    assert result.stats.counters["docs_in"] == 2 * kept
    assert result.stats.counters["docs_out"] == kept
    assert result.stats.dropped["duplicate_id"] == kept
    ids = [d.id for part in part_files(tmp_path / "dedup") for d in read_documents(part)]
    assert len(ids) == len(set(ids)) == kept
    excluded = pq.read_table(tmp_path / "dedup" / "excluded").to_pylist()
    assert all(row["metadata"]["dedup"]["duplicate_of"] == row["id"] for row in excluded)


@dataclass(frozen=True)
class CopiesConfig:
    copies: int = 2


def documents_with_copies(run: TaskRun) -> None:
    """A stage of the test's own: each document of the input, then upper-cased copies of the first few
    under new ids (exact duplicates after normalisation), with the last sentence cut (near duplicates)."""
    docs = list(read_documents(run.input))
    with run.documents() as sink:
        for doc in docs:
            sink.keep(doc)
        for doc in docs[: run.config.copies]:
            sink.keep(Document(id=f"copy-{doc.id}", text=doc.text.upper() + "  ", url=doc.url))
            sink.keep(Document(id=f"near-{doc.id}", text=doc.text.rsplit(".", 2)[0], url=doc.url))


def test_dedup_across_files_drops_copies_with_reason(stages, tmp_path):
    out, _ = stages
    copies = run_stage(
        Stage("extract", "1", documents_with_copies, CopiesConfig()),
        read_stage(str(out / "extract")).document_inputs(),
        str(tmp_path / "copies"),
    )
    assert copies.complete
    result = dedup(str(tmp_path / "copies"), str(tmp_path / "dedup"), DedupConfig())
    assert result.stats.dropped["exact_duplicate"] == 2 and result.stats.dropped["near_duplicate"] == 2
    excluded = pq.read_table(tmp_path / "dedup" / "excluded").to_pylist()
    assert {row["id"].split("-", 1)[0] for row in excluded} == {"copy", "near"}
    for row in excluded:
        assert row["metadata"]["dedup"]["duplicate_of"] == row["id"].split("-", 1)[1]
    kept = {d.id: d for part in part_files(tmp_path / "dedup") for d in read_documents(part)}
    heads = [d for d in kept.values() if "dedup" in d.metadata]
    assert len(heads) == 2 and all(d.metadata["dedup"]["cluster"] == d.id for d in heads)


@pytest.mark.slow
def test_bad_input_corpus_beside_a_real_common_crawl_file(ray_head, tmp_path):
    """Through the stage, on Ray: no task fails, every good page is kept, nothing undecoded is kept, and
    every broken file and record is named in the stats."""
    bad = DATA / "bad"
    cc = DATA / "cc-main-2024-22-whirlwind.warc.gz"
    result = extract([str(bad), str(cc)], str(tmp_path / "out"), ExtractConfig())
    assert result.complete and not result.failed and result.tasks == len(list(bad.glob("*.warc*"))) + 1
    good = {i for ids in json.loads((DATA / "bad-inputs.json").read_text()).values() for i in ids}
    kept = {d.id: d.text for part in part_files(tmp_path / "out") for d in read_documents(part)}
    assert good <= set(kept)
    assert not [i for i, text in kept.items() if "\ufffd" in text or "\x00" in text]
    errors = json.loads((tmp_path / "out" / "stats" / "merged.json").read_text())["errors"]
    for name in (
        "garbage",
        "empty",
        "truncated",
        "content-length-1gb",
        "empty-gzip-member",
        "html-named-warc",
    ):
        assert any(f"/{name}.warc.gz" in e for e in errors), name
    assert {"corrupt_record", "record_too_large", "undecodable_text", "extraction_timeout"} <= set(
        result.stats.dropped
    )


def test_corrupt_file_is_reported_not_fatal(ray_head, tmp_path):
    bad = tmp_path / "not-a-warc.warc.gz"
    bad.write_bytes(b"this is not a WARC file at all\n" * 10)
    result = extract([SAMPLE, str(bad)], str(tmp_path / "out"), ExtractConfig())
    assert not result.failed
    assert result.stats.counters["corrupt_files"] == 1
    assert any("not-a-warc" in e for e in result.stats.errors)
    assert result.stats.counters["docs_out"] >= 15  # the good file's pages are all there


def test_ray_job_submit(ray_head, tmp_path):
    """The documented cluster path: `ray job submit --working-dir . -- python -m jobs.extract ...`."""
    out = tmp_path / "submitted"
    deadline = time.monotonic() + 180  # a fresh head's job agent may not be up yet ("try again later");
    while True:  # on a loaded 2-core machine it took over 30 s
        done = _submit(ray_head, out)
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"extract: {_count_responses(SAMPLE)} docs in" in done.stdout
    ids = pq.read_table(part_files(out)[0]).column("id").to_pylist()
    assert ids and all(i.startswith("<urn:uuid:") for i in ids)


def _submit(ray_head: dict[str, str], out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            ray_head["ray"],
            "job",
            "submit",
            "--address",
            ray_head["dashboard"],
            "--working-dir",
            str(REPO),
            "--",
            "python",
            "-m",
            "jobs.extract",
            SAMPLE,
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_without_ray_address_a_stage_starts_its_own_local_ray(tmp_path):
    """The default for a user with no cluster: the command starts a private local Ray and ends it."""
    done = run_tokenmill("extract", SAMPLE, "--output", str(tmp_path / "out"), timeout=300, own_ray=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"extract: {_count_responses(SAMPLE)} docs in" in done.stdout
    assert len(list((tmp_path / "out" / "completions").glob("*.json"))) == 1


@dataclass(frozen=True)
class SlicesConfig:
    slices: int = 4


def one_slice(run: TaskRun) -> None:
    """A stage of the test's own: every n-th document of the input, so one part file becomes n."""
    with run.documents() as sink:
        for k, doc in enumerate(read_documents(run.input)):
            if k % run.config.slices == run.identity["slice"]:
                sink.keep(doc)


@pytest.fixture(scope="module")
def sliced(stages, tmp_path_factory):
    """The dedup output as four part files (every 4th document in each)."""
    out, _ = stages
    folder = tmp_path_factory.mktemp("sliced") / "docs"
    dedup_part = part_files(out / "dedup")[0]
    slices = [TaskInput(f"slice{i}", dedup_part, {"slice": i}) for i in range(4)]
    assert run_stage(Stage("extract", "1", one_slice, SlicesConfig()), slices, str(folder)).complete
    return folder


def test_tokenizer_trains_on_a_uniform_sample_under_the_byte_budget(sliced, tmp_path):
    texts = [d.text for f in part_files(sliced) for d in read_documents(f)]
    corpus = sum(len(t.encode()) for t in texts)
    runs = [
        train_tokenizer(
            str(sliced),
            str(tmp_path / f"{k}.json"),
            TokenizerConfig(vocab_size=400, sample_bytes=corpus // 3),
        )
        for k in ("a", "b")
    ]
    a, b = runs
    assert 0.25 < a["sample"]["fraction"] < 0.45  # the corpus size comes from the Parquet footers
    assert corpus / 6 < a["counters"]["bytes_in"] < corpus * 2 / 3
    assert a["counters"]["docs_in"] < len(texts)
    assert (a["sha256"], a["counters"]) == (b["sha256"], b["counters"])  # the same sample every time
    seeded = train_tokenizer(
        str(sliced),
        str(tmp_path / "c.json"),
        TokenizerConfig(vocab_size=400, sample_bytes=corpus // 3, seed=5),
    )
    assert seeded["counters"] != a["counters"]
    everything = train_tokenizer(str(sliced), str(tmp_path / "d.json"), TokenizerConfig(vocab_size=400))
    assert everything["counters"] == {"docs_in": len(texts), "bytes_in": corpus}


def test_tokenize_packs_a_global_shuffle_into_shards_of_the_target_size(stages, sliced, tmp_path):
    """Shards are planned from the corpus, not the input files: about shard_tokens each, every shard mixes
    documents of several inputs, the order is a function of the seed alone, the split of the id alone."""
    out, r = stages
    one = json.loads((out / "shards" / "manifest.json").read_text())
    total = one["totals"]["train"]["num_tokens"]
    folders = {}
    for name, seed, fan_in in (("a", 0, 256), ("b", 0, 256), ("c", 7, 256), ("d", 0, 2)):
        tokenize(
            str(sliced),
            f"{out}/tok/tokenizer.json",
            str(tmp_path / name),
            TokenizeConfig(val_fraction=0.2, shard_tokens=total // 4, seed=seed, fan_in=fan_in),
        )
        folders[name] = json.loads((tmp_path / name / "manifest.json").read_text())
    manifest = folders["a"]
    train = manifest["splits"]["train"]
    assert 3 <= len(train) <= 5  # planned from an estimate of the corpus's tokens
    assert all(total / 12 < s["num_tokens"] < total / 1.5 for s in train)
    assert manifest["totals"]["all"]["num_tokens"] == one["totals"]["all"]["num_tokens"]
    # each shard records its documents' UTF-8 bytes: what bits per byte divides by
    texts = [d.text for f in part_files(sliced) for d in read_documents(f)]
    assert manifest["totals"]["all"]["text_bytes"] == sum(len(t.encode()) for t in texts)
    assert all(s["text_bytes"] > 0 for s in train)
    assert manifest["totals"]["val"]["num_docs"] == one["totals"]["val"]["num_docs"]

    def order(name: str, split: str = "train") -> list[str]:
        ids = []
        for info in folders[name]["splits"][split]:
            ids += read_shard(str(tmp_path / name / info["file"])).doc_ids.to_pylist()
        return ids

    assert order("a") == order("b")  # deterministic
    # 4 parts past a fan-in of 2: a regroup wave joins sections first; the shards are the same bytes
    assert [(s["file"], s["sha256"]) for s in folders["d"]["splits"]["train"]] == [
        (s["file"], s["sha256"]) for s in train
    ]
    assert order("c") != order("a") and sorted(order("c")) == sorted(order("a"))  # the seed reorders...
    assert sorted(order("c", "val")) == sorted(order("a", "val"))  # ...but never moves a document's split
    # the order is a shuffle across the input files, not file after file
    slice_of = {d.id: i for i, f in enumerate(part_files(sliced)) for d in read_documents(f)}
    for info in train:
        assert (
            len({slice_of[i] for i in read_shard(str(tmp_path / "a" / info["file"])).doc_ids.to_pylist()}) > 1
        )
    assert not (tmp_path / "a" / "_work").exists()  # the work files go once the manifest is written


def test_filter_decontaminates_and_says_why(stages, tmp_path):
    """`tokenmill filter --decontaminate`: a page holding an evaluation passage goes (or, with mark, stays
    marked), the reason and hits are recorded, and a changed evaluation file is a change a rerun names."""
    out, r = stages
    page = next(read_documents(part_files(out / "filter")[0]))
    passage = " ".join(page.text.split()[40:70])  # 30 words of a kept page, as an evaluation item
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": passage.upper(), "answer": "B"}) + "\n")
    args = ["filter", f"{out}/extract", "--output", str(tmp_path / "f"), "--decontaminate", str(evals)]
    done = run_tokenmill(*args)
    assert done.returncode == 0, done.stderr
    assert "decontamination.ngrams" in done.stdout
    excluded = pq.read_table(tmp_path / "f" / "excluded").to_pylist()
    (row,) = [x for x in excluded if x["reason"] == "decontamination.ngrams"]
    assert row["id"] == page.id and row["metadata"]["filter"]["decontamination"]["ngrams"] >= 17
    assert row["metadata"]["filter"]["decontamination"]["file"].endswith("eval.jsonl")
    counters = json.loads((tmp_path / "f" / "stats" / "merged.json").read_text())["counters"]
    assert counters["docs_out"] == r["filter"].stats.counters["docs_out"] - 1
    evals.write_text(json.dumps({"question": passage + " (edited)", "answer": "C"}) + "\n")
    again = run_tokenmill(*args)
    assert again.returncode == 2 and "decontamination=" in again.stderr  # named, not silently reused
    mark = ["filter", f"{out}/extract", "--output", str(tmp_path / "m"), "--decontaminate", str(evals)]
    marked = run_tokenmill(*mark, "--decontaminate-action", "mark")
    assert marked.returncode == 0, marked.stderr
    kept = {d.id: d for p in (tmp_path / "m").glob("part-*.parquet") for d in read_documents(str(p))}
    assert kept[page.id].metadata["filter"]["decontamination"]["ngrams"] >= 17
    assert (
        json.loads((tmp_path / "m" / "stats" / "merged.json").read_text())["counters"][
            "decontamination_marked"
        ]
        == 1
    )


def test_a_flipped_byte_stops_verify_and_pretrain_naming_the_shard(stages, tmp_path):
    out, _ = stages
    copy = tmp_path / "shards"
    shutil.copytree(out / "shards", copy)
    ok = run_tokenmill("verify", str(copy))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ") and "tokens verified" in ok.stdout
    manifest = json.loads((copy / "manifest.json").read_text())
    shard = manifest["splits"]["train"][0]["file"]
    data = bytearray((copy / shard).read_bytes())
    data[len(data) // 3] ^= 0x01  # inside the token stream: same size, same counts
    (copy / shard).write_bytes(bytes(data))
    bad = run_tokenmill("verify", str(copy))
    assert bad.returncode == 1 and f"{copy}: train/{shard}: sha256 differs from the manifest" in bad.stdout
    run = run_tokenmill(
        "pretrain", "--data", str(copy), "--output", str(tmp_path / "run"), "--max-steps", "2",
        "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "2",
    )  # fmt: skip
    assert run.returncode == 2 and f"{shard}: sha256 differs from the manifest" in run.stderr, run.stderr
