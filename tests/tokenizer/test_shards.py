"""The shard format: written once, read zero-copy, checked against the manifest."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import DATA
from tokenizer.bpe import EOS_TOKEN, encode_documents, eos_id, train_bpe
from tokenizer.shards import (
    Manifest,
    ShardInfo,
    TokenizerInfo,
    read_manifest,
    read_shard,
    sha256_file,
    token_dtype,
    verify_shards,
    write_manifest,
    write_shard,
)


def test_dtype_follows_vocab_size():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_shard_roundtrip_is_zero_copy(tmp_path):
    docs = [np.array([5, 6, 7, 0], np.uint16), np.array([8, 0], np.uint16), np.array([9, 9, 9, 0], np.uint16)]
    info = write_shard(str(tmp_path / "train-0.arrow"), docs, ["a", "b", "c"], np.dtype(np.uint16))
    assert (info.num_docs, info.num_tokens) == (3, 10)
    shard = read_shard(str(tmp_path / "train-0.arrow"))
    assert shard.tokens.tolist() == [5, 6, 7, 0, 8, 0, 9, 9, 9, 0]
    assert shard.offsets.tolist() == [0, 4, 6, 10]
    assert not shard.tokens.flags.owndata  # a view on the memory map, not a copy
    table = pa.ipc.open_file(str(tmp_path / "train-0.arrow")).read_all()
    assert table.column("doc_id").to_pylist() == ["a", "b", "c"]


def test_verify_catches_a_changed_shard(tmp_path):
    tok = train_bpe(["hello world " * 50], vocab_size=300)
    tok.save(str(tmp_path / "tokenizer.json"))
    ids = list(encode_documents(tok, ["hello world", "world"], np.dtype(np.uint16)))
    info = write_shard(str(tmp_path / "train-0.arrow"), ids, ["x", "y"], np.dtype(np.uint16))
    tinfo = TokenizerInfo("tokenizer.json", sha256_file(str(tmp_path / "tokenizer.json")), 300, eos_id(tok))
    write_manifest(str(tmp_path), Manifest(tinfo, "uint16", {"train": [info], "val": []}))
    assert verify_shards(str(tmp_path)) == []
    assert read_manifest(str(tmp_path)).totals()["all"] == {
        "num_shards": 1,
        "num_docs": 2,
        "num_tokens": info.num_tokens,
    }
    write_shard(str(tmp_path / "train-0.arrow"), ids[:1], ["x"], np.dtype(np.uint16))
    problems = verify_shards(str(tmp_path))
    assert any("sha256" in p for p in problems) and any("counts" in p for p in problems)


def test_manifest_rejects_other_formats(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(ValueError, match="not a tokenmill-shards manifest"):
        read_manifest(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        read_manifest(str(tmp_path / "nowhere"))
    assert ShardInfo("f", 1, 2, "s").num_tokens == 2


def test_bpe_roundtrips_real_text_and_appends_eos():
    text = (DATA / "tinyshakespeare-excerpt.txt").read_text()[:50_000]
    tok = train_bpe([text], vocab_size=512)
    assert tok.get_vocab_size() == 512 and tok.token_to_id(EOS_TOKEN) == eos_id(tok)
    sample = "First Citizen: Before we proceed any further, hear me speak — ünïcödé ✓"
    (ids,) = encode_documents(tok, [sample], np.dtype(np.uint16))
    assert ids[-1] == eos_id(tok)
    assert tok.decode(ids[:-1].tolist()) == sample  # byte-level: every string survives, no <unk>
    assert len(ids) < len(sample.encode())  # merges learnt from real text compress it
