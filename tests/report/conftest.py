"""A run folder made in about a second, without Ray: the stages' own writers (DocumentSink, the stage index,
write_shard and write_manifest) fill extract/, filter/, dedup/, tokenizer/, shards/ and pretrain/ with
documents whose languages, lengths, domains, drop reasons and duplicate clusters the tests know exactly."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline import storage
from pipeline.documents import Document, DocumentSink
from pipeline.stage_folder import MERGED, index_row, write_index
from pipeline.stats import Stats
from tokenizer.shards import Manifest, ShardInfo, TokenizerInfo, write_manifest, write_shard

# A dropped page's text that must reach the page as text, never as markup.
HOSTILE = '<script>alert("x")</script></pre><img src="https://example.com/x.png"> & more'
WORDS = "the of and to in data crawl token shard page model text filter web language".split()


@dataclass
class Expected:
    """What the fixture wrote, for the tests to compare the report with."""

    kept_languages: dict[str, Counter] = field(default_factory=dict)  # stage -> language -> kept docs
    dropped: dict[str, Counter] = field(default_factory=dict)  # stage -> reason -> docs
    domains: Counter = field(default_factory=Counter)  # registered domains of dedup's kept docs
    cluster_sizes: Counter = field(default_factory=Counter)  # size -> clusters
    token_lengths: list[int] = field(default_factory=list)
    text_bytes: int = 0


@dataclass
class RunFolder:
    path: Path
    expected: Expected


def _text(rng: random.Random, words: int) -> str:
    lines = []
    while words > 0:
        n = min(words, rng.randint(5, 14))
        lines.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
        words -= n
    return "\n".join(lines)


def _docs(rng: random.Random, n: int) -> list[Document]:
    hosts = ["www.example.org", "news.example.org", "blog.sample.co.uk", "shop.other.com", "a.b.c.de"]
    docs = []
    for i in range(n):
        host = hosts[min(int(rng.expovariate(0.9)), len(hosts) - 1)]  # a few domains much more common
        words = int(10 ** rng.uniform(1, 3.3))
        docs.append(
            Document(
                id=f"<urn:uuid:{i:08d}>",
                text=_text(rng, words),
                url=f"https://{host}/page/{i}",
                date="2024-05-01T00:00:00Z",
                warc_file="crawl-00000.warc.gz",
            )
        )
    return docs


def _stage(root: Path, stage: str, parts: dict[str, list[tuple[Document, str | None]]]) -> Stats:
    """One stage folder: per part, documents kept (reason None) or dropped, then merged stats and index."""
    merged = Stats()
    rows = {}
    for key, docs in parts.items():
        stats = Stats()
        part, excluded = root / f"part-{key}.parquet", root / "excluded" / f"part-{key}.parquet"
        with DocumentSink(str(part), str(excluded), stats) as sink:
            for doc, reason in docs:
                stats.add("docs_in")
                if reason is None:
                    sink.keep(doc)
                else:
                    sink.drop(doc, reason)
        outputs = {f"part-{key}.parquet": part.stat().st_size, f"excluded/part-{key}.parquet": 1}
        record = {
            "key": key,
            "fingerprint": "f" * 24,
            "input": {},
            "outputs": outputs,
            "stats": stats.to_json(),
        }
        rows[key] = index_row(record)
        merged.merge(stats)
    write_index(str(root), rows)
    summary = {"stage": stage, "output": str(root), "complete": True, "fingerprint": "f" * 24}
    summary |= {"wall_seconds": 1.5, **merged.to_json()}
    storage.write_json(str(root / MERGED), summary)
    return merged


def _tokenizer_json() -> str:
    """A tiny byte-level BPE, trained here in milliseconds with the tokenizers library itself."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(WORDS)] * 50, trainer)
    return tok.to_str()


def build_run(root: Path, seed: int = 0) -> RunFolder:
    rng = random.Random(seed)
    exp = Expected()
    docs = _docs(rng, 160)
    # extract: a few records without text (not_html), the rest kept, in two part files
    extract = {
        "crawl-a": [(d, "not_html" if i % 23 == 0 else None) for i, d in enumerate(docs[:80])],
        "crawl-b": [(d, "not_html" if i % 23 == 0 else None) for i, d in enumerate(docs[80:])],
    }
    for part in extract.values():
        for i, (doc, reason) in enumerate(part):
            if reason:
                part[i] = (Document(doc.id, "", doc.url, doc.date, doc.warc_file), reason)
    exp.dropped["extract"] = _stage(root / "extract", "extract", extract).dropped
    kept = [d for part in extract.values() for d, r in part if r is None]
    # filter: languages, and drops by language, by a quality rule and one hostile page
    languages = ["en"] * 6 + ["de", "fr"]
    filtered = {}
    for key in ("crawl-a", "crawl-b"):
        out: list[tuple[Document, str | None]] = []
        for doc in kept[: len(kept) // 2] if key == "crawl-a" else kept[len(kept) // 2 :]:
            lang = rng.choice(languages)
            doc.metadata = {"language": lang, "language_score": 0.9}
            reason = None
            if lang == "fr":
                reason = "language.fr"
            elif len(doc.text) < 200:
                reason = "gopher_quality.words"
            out.append((doc, reason))
        filtered[key] = out
    hostile = Document("<urn:uuid:hostile>", HOSTILE + " " + "x" * 400, "https://evil.example/<b>", "", "w")
    hostile.metadata = {"language": "en", "language_score": 0.99}
    filtered["crawl-a"].insert(0, (hostile, "c4.curly_bracket"))
    exp.dropped["filter"] = _stage(root / "filter", "filter", filtered).dropped
    survivors = [d for part in filtered.values() for d, r in part if r is None]
    exp.kept_languages["filter"] = Counter(d.metadata["language"] for d in survivors)
    # dedup: clusters of 2, 3 and 5 documents, the first of each kept
    deduped = {"crawl-a": [], "crawl-b": []}
    clusters = [survivors[0:2], survivors[2:5], survivors[5:10]]
    in_cluster = {}
    for members in clusters:
        root_id = members[0].id
        exp.cluster_sizes[len(members)] += 1
        for j, doc in enumerate(members):
            in_cluster[doc.id] = (root_id, j == 0)
    for i, doc in enumerate(survivors):
        key = "crawl-a" if i % 2 else "crawl-b"  # a cluster's documents in both files
        reason = None
        if doc.id in in_cluster:
            root_id, first = in_cluster[doc.id]
            doc.metadata["dedup"] = (
                {"cluster": root_id} if first else {"cluster": root_id, "duplicate_of": root_id}
            )
            reason = None if first else "near_duplicate"
        deduped[key].append((doc, reason))
    exp.dropped["dedup"] = _stage(root / "dedup", "dedup", deduped).dropped
    final = [d for part in deduped.values() for d, r in part if r is None]
    exp.kept_languages["dedup"] = Counter(d.metadata["language"] for d in final)
    exp.domains = Counter(".".join(d.url.split("/")[2].split(".")[-2:]) for d in final)
    exp.domains = Counter({("sample.co.uk" if k == "co.uk" else k): v for k, v in exp.domains.items()})
    exp.text_bytes = sum(len(d.text.encode("utf-8")) for d in final)
    _tokenizer_and_shards(root, final, exp, rng)
    return RunFolder(root, exp)


def _tokenizer_and_shards(root: Path, final: list[Document], exp: Expected, rng: random.Random) -> None:
    tokenizer = _tokenizer_json()
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text(tokenizer)
    stats = {"stage": "train-tokenizer", "counters": {"docs_in": len(final)}, "wall_seconds": 0.4}
    storage.write_json(str(root / "tokenizer" / "tokenizer.stats.json"), stats)
    shards = root / "shards"
    shards.mkdir()
    (shards / "tokenizer.json").write_text(tokenizer)
    order = rng.sample(final, len(final))
    groups = {"train": [order[0:25], order[25:50], order[50:-8]], "val": [order[-8:]]}
    splits: dict[str, list[ShardInfo]] = {"train": [], "val": []}
    counters = Counter(docs_in=len(final), docs_out=len(final), text_bytes=exp.text_bytes)
    for split, chunks in groups.items():
        for p, chunk in enumerate(chunks):
            lists = [np.append(np.ones(len(d.text) // 4 + 1, np.uint16), 0) for d in chunk]  # ~4 bytes/token
            exp.token_lengths += [len(t) for t in lists]
            url = str(shards / f"{split}-{p:05d}.arrow")
            splits[split].append(write_shard(url, lists, [d.id for d in chunk], np.dtype(np.uint16)))
            counters[f"{split}_docs"] += len(chunk)
            counters[f"{split}_tokens"] += sum(len(t) for t in lists)
    info = TokenizerInfo("tokenizer.json", "0" * 64, 300, 0)
    write_manifest(str(shards), Manifest(info, "uint16", splits, input=[str(root / "dedup")]))
    summary = {"stage": "tokenize", "output": str(shards), "complete": True, "wall_seconds": 0.7}
    summary |= {"counters": dict(counters), "dropped": {}, "errors": [], "errors_total": 0}
    storage.write_json(str(shards / MERGED), summary)
    # pretrain: a falling loss, validation every 10 steps
    lines = []
    for step in range(1, 61):
        row = {
            "step": step,
            "loss": 8 * 0.97**step + 2,
            "lr": 1e-3,
            "tokens_per_s": 5000.0,
            "elapsed_s": step / 2,
        }
        if step % 10 == 0:
            row["val_loss"] = row["loss"] + 0.3
        lines.append(json.dumps(row))
    (root / "pretrain").mkdir()
    (root / "pretrain" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    # work files (a folder named _*): never a stage of the report
    storage.write_json(str(root / "_work" / MERGED), {"stage": "scratch", "counters": {"docs_in": 1}})


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    """Built once per session; tests that change it work on a copy."""
    return build_run(tmp_path_factory.mktemp("report-run") / "run")
