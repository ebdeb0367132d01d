"""Tokenize a finished document folder into globally shuffled token shards of a target size, on Ray.

The number of shards per split is planned first: the corpus's tokens are estimated from the part files'
sizes and the tokens per byte of a few parts, so shards come out near `shard_tokens` whatever the number of
input files. Then the waves of tokenizer/shuffle.py run, each a resumable stage: encode and (past fan_in part
files) regroup in OUTPUT/_work, pack in OUTPUT. Every shard is committed with its task; the manifest is
removed before anything in the folder changes and rewritten once every shard is committed, so a folder never
holds shards that disagree with its manifest.json. Once it is written, OUTPUT/_work is deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from importlib.metadata import version

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import UsageError, to_table
from pipeline.documents import text_bytes
from pipeline.stage import (
    Stage,
    StageResult,
    TaskInput,
    describe_changes,
    expected_fingerprint,
    refuse_config_change,
    run_stage,
    with_upstream,
)
from pipeline.stage_folder import MERGED, read_stage
from pipeline.stats import Stats
from tokenizer.bpe import EOS_TOKEN, eos_id, load_tokenizer, special_token_ids
from tokenizer.shards import (
    MANIFEST_FILE,
    SPLITS,
    TOKENIZER_FILE,
    Manifest,
    ShardInfo,
    TokenizerInfo,
    token_dtype,
    write_manifest,
)
from tokenizer.shuffle import Sections, ShardPlan, encode_part, pack_shard, regroup

VERSION = f"3 tokenizers={version('tokenizers')}"
SAMPLED_PARTS, SAMPLED_BYTES = 8, 1 << 17  # what the estimate of the corpus's tokens encodes


@dataclass(frozen=True)
class TokenizeConfig:
    val_fraction: float = 0.01
    shard_tokens: int = 100_000_000  # target tokens per shard (~200 MB of uint16)
    seed: int = 0  # the documents' order: one seeded shuffle of the whole corpus
    batch_docs: int = 512
    fan_in: int = 256  # files one task reads at most: more part files than this add a regroup wave

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_tokens < 1 or self.batch_docs < 1 or self.fan_in < 2:
            raise ValueError("shard_tokens and batch_docs must be >= 1, fan_in >= 2")


def estimate_tokens(inputs: list[TaskInput], tokenizer_url: str) -> int:
    """The corpus's tokens: its parts' sizes times the tokens per stored byte of a few parts spread over it
    (their text's bytes from the footer, times the tokens per byte of their first SAMPLED_BYTES of text)."""
    tokenizer = load_tokenizer(tokenizer_url)
    picks = sorted({round(i * (len(inputs) - 1) / max(SAMPLED_PARTS - 1, 1)) for i in range(SAMPLED_PARTS)})
    tokens = size = 0.0
    for inp in (inputs[i] for i in picks if i < len(inputs)):
        fs, path = storage.filesystem(inp.url)
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            if not parquet.metadata.num_rows:
                continue
            texts, n = [], 0
            for batch in parquet.iter_batches(batch_size=16, columns=["text"]):
                texts += batch.column("text").to_pylist()
                n = sum(len(t.encode()) for t in texts)
                if n >= SAMPLED_BYTES:
                    break
            encoded = sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False))
            stored_text = text_bytes(parquet.metadata) - 4 * parquet.metadata.num_rows
            tokens += encoded * stored_text / max(n, 1) + parquet.metadata.num_rows  # + one EOS each
            size += inp.identity["size"]
    total_size = sum(inp.identity["size"] for inp in inputs)
    return math.ceil(tokens * total_size / size) if size else 0


def plan_shards(estimated_tokens: int, cfg: TokenizeConfig, tokenizer_url: str) -> ShardPlan:
    val = estimated_tokens * cfg.val_fraction
    return ShardPlan(
        tokenizer_url,
        train=max(1, round((estimated_tokens - val) / cfg.shard_tokens)),
        val=max(1, round(val / cfg.shard_tokens)) if cfg.val_fraction else 0,
    )


def tokenize(
    input_dir: str, tokenizer_url: str, output: str, cfg: TokenizeConfig, overwrite: bool = False
) -> StageResult:
    started = time.perf_counter()
    try:
        tokenizer_bytes = storage.read_bytes(tokenizer_url)
    except FileNotFoundError:
        raise UsageError(f"no such tokenizer file: {tokenizer_url}") from None
    if load_tokenizer(tokenizer_url).token_to_id(EOS_TOKEN) is None:
        raise UsageError(
            f"{tokenizer_url} has no {EOS_TOKEN} token: train one with `tokenmill train-tokenizer`"
        )
    docs = read_stage(input_dir)
    inputs = docs.document_inputs()
    if not inputs:
        raise UsageError(f"no documents in {input_dir}")
    root = storage.normalize(output)
    work = storage.join(root, "_work")
    # The plan is part of every fingerprint; it depends only on the inputs and the tokenizer.
    plan = plan_shards(estimate_tokens(inputs, tokenizer_url), cfg, tokenizer_url)
    sha256 = hashlib.sha256(tokenizer_bytes).hexdigest()
    waves = _Waves(cfg, plan, work, sha256, token_dtype(load_tokenizer(tokenizer_url).get_vocab_size()).name)
    encode_inputs = with_upstream(inputs, tokenizer_sha256=sha256, shards=f"{plan.train}+{plan.val}")
    pack, pack_inputs = waves.pack(encode_inputs)
    merged = _merged(root)
    if merged.get("complete") and merged.get("fingerprint") == expected_fingerprint(pack, pack_inputs):
        if storage.exists(storage.join(root, MANIFEST_FILE)):
            result = run_stage(pack, pack_inputs, root, overwrite=overwrite, started=started)  # skips all
            result.stats = Stats.from_json(
                merged
            )  # every wave's counters, as the run that made them left them
            return result
    if merged.get("stage") == "tokenize":  # another recipe's shards: say what changed before touching them
        refuse_config_change(f"{root} was", describe_changes(merged, pack.recipe(pack_inputs[0])), overwrite)
    storage.remove([storage.join(root, MANIFEST_FILE)])  # before any shard changes
    carried = Stats()
    for stage, stage_inputs, folder in waves.before_pack(encode_inputs):
        done = run_stage(stage, stage_inputs, folder, overwrite=overwrite)
        if not done.complete:
            return dataclasses.replace(done, stage="tokenize", output=root)
        carried.merge(done.stats)
    result = run_stage(pack, pack_inputs, root, overwrite=overwrite, started=started, carried=carried)
    if not result.complete:
        return result
    _write_manifest(root, tokenizer_bytes, sha256, result, cfg, docs.root, docs.fingerprint)
    storage.remove_tree(work)
    return result


@dataclass
class _Waves:
    """The stages of tokenize and their inputs, each identified by the fingerprint of the wave before."""

    cfg: TokenizeConfig
    plan: ShardPlan
    work: str
    tokenizer_sha256: str
    dtype: str

    def encode(self) -> Stage:
        return Stage("tokenize-encode", VERSION, encode_part, self.cfg, ("encoded-*.bin",), context=self.plan)

    def sections(self, encode_inputs: list[TaskInput]) -> Sections:
        keys = sorted(inp.key for inp in encode_inputs)
        encoded = [storage.join(self.work, "encode", f"encoded-{key}.bin") for key in keys]
        regrouped = storage.join(self.work, "regroup") if len(encoded) > self.cfg.fan_in else None
        return Sections(encoded, regrouped, self.cfg.fan_in, self.plan.shards, self.dtype)

    def regroup(self, encode_inputs: list[TaskInput]) -> tuple[Stage, list[TaskInput]]:
        where = self.sections(encode_inputs)
        fingerprint = expected_fingerprint(self.encode(), encode_inputs)
        inputs = [
            TaskInput(f"c{c:05d}-b{b:05d}", where.regrouped, {"encoded": fingerprint, "chunk": c, "block": b})
            for c in range(where.chunks)
            for b in range(where.blocks)
        ]
        return Stage(
            "tokenize-regroup", VERSION, regroup, self.cfg, ("regrouped-*.bin",), context=where
        ), inputs

    def before_pack(self, encode_inputs: list[TaskInput]) -> list[tuple[Stage, list[TaskInput], str]]:
        waves = [(self.encode(), encode_inputs, storage.join(self.work, "encode"))]
        if self.sections(encode_inputs).regrouped is not None:
            waves.append((*self.regroup(encode_inputs), storage.join(self.work, "regroup")))
        return waves

    def pack(self, encode_inputs: list[TaskInput]) -> tuple[Stage, list[TaskInput]]:
        where = self.sections(encode_inputs)
        before = self.before_pack(encode_inputs)[-1]
        sections_fp = expected_fingerprint(before[0], before[1])
        inputs = [
            TaskInput(name, self.work, {"sections": sections_fp, "section": p})
            for p, name in enumerate(self.plan.names)
        ]
        stage = Stage(
            "tokenize", VERSION, pack_shard, self.cfg, ("train-*.arrow", "val-*.arrow"), context=where
        )
        return stage, inputs


def _merged(root: str) -> dict:
    try:
        return storage.read_json(storage.join(root, MERGED))
    except FileNotFoundError:
        return {}


def _write_manifest(
    root: str,
    tokenizer_bytes: bytes,
    sha256: str,
    result: StageResult,
    cfg: TokenizeConfig,
    upstream_root: str,
    upstream_fp: str,
) -> None:
    storage.write_bytes(storage.join(root, TOKENIZER_FILE), tokenizer_bytes)  # the folder is self-contained
    tokenizer = load_tokenizer(storage.join(root, TOKENIZER_FILE))
    splits: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    for key in sorted(result.records):
        shard = json.loads(result.records[key]["result"])
        if "shard" in shard:
            splits[shard["split"]].append(ShardInfo(**shard["shard"]))
    vocab_size = tokenizer.get_vocab_size()
    manifest = Manifest(
        tokenizer=TokenizerInfo(
            TOKENIZER_FILE, sha256, vocab_size, eos_id(tokenizer), special_token_ids(tokenizer)
        ),
        dtype=token_dtype(vocab_size).name,
        splits=splits,
        config={**to_table(cfg), "fingerprint": result.fingerprint, "upstream": upstream_fp},
        input=[upstream_root],
    )
    write_manifest(root, manifest)
