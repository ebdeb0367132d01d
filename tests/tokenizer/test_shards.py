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
        "text_bytes": 0,  # write_shard knows tokens, not text: tokenize's pack task records it
    }
    path = tmp_path / "train-0.arrow"
    data = bytearray(path.read_bytes())
    body = data.index(np.array(ids[0], np.uint16).tobytes())  # the first document's tokens
    data[body] ^= 0x01  # one flipped bit: same size, same counts
    path.write_bytes(bytes(data))
    assert verify_shards(str(tmp_path), deep=False) == []  # the quick check cannot see it
    assert verify_shards(str(tmp_path)) == [
        "train/train-0.arrow: sha256 differs from the manifest (the file changed or is damaged)"
    ]
    write_shard(str(path), ids[:1], ["x"], np.dtype(np.uint16))
    (problem,) = verify_shards(str(tmp_path), deep=False)
    assert problem.startswith("train/train-0.arrow: ") and "bytes, the manifest says" in problem


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


def _shard_folder(folder: str, tok_dir) -> Manifest:
    """A two-shard folder written to `folder` (a local path or a URL), as tokenize writes it."""
    from pipeline import storage

    tok = train_bpe(["hello world, the world says hello " * 40], vocab_size=300)
    tok.save(str(tok_dir / "tokenizer.json"))
    storage.write_bytes(storage.join(folder, "tokenizer.json"), (tok_dir / "tokenizer.json").read_bytes())
    dtype = np.dtype(np.uint16)
    ids = list(encode_documents(tok, ["hello world", "world says", "the hello"], dtype))
    splits = {
        "train": [write_shard(storage.join(folder, "train-0.arrow"), ids[:2], ["a", "b"], dtype)],
        "val": [write_shard(storage.join(folder, "val-0.arrow"), ids[2:], ["c"], dtype)],
    }
    tinfo = TokenizerInfo("tokenizer.json", sha256_file(str(tok_dir / "tokenizer.json")), 300, eos_id(tok))
    manifest = Manifest(tinfo, "uint16", splits, config={"val_fraction": 0.3}, input=["docs/"])
    write_manifest(folder, manifest)
    return manifest


def test_shard_folder_on_s3_is_the_same_as_on_disk(s3_url, tmp_path):
    from pipeline import storage

    (tmp_path / "tok").mkdir()
    local = _shard_folder(str(tmp_path / "local"), tmp_path / "tok")
    remote_url = f"{s3_url}/shards"
    remote = _shard_folder(remote_url, tmp_path / "tok")
    assert remote == local  # same files, same hashes, same manifest
    assert sorted(storage.list_tree(remote_url)) == [
        "manifest.json",
        "tokenizer.json",
        "train-0.arrow",
        "val-0.arrow",
    ]
    for name in ("train-0.arrow", "manifest.json"):
        assert storage.read_bytes(f"{remote_url}/{name}") == (tmp_path / "local" / name).read_bytes()
    assert sha256_file(f"{remote_url}/train-0.arrow") == remote.splits["train"][0].sha256
    assert read_manifest(remote_url) == local
    assert verify_shards(remote_url) == []
    # a plain pyarrow + fsspec reader needs no tokenmill code for a remote shard either
    fs, path = storage.filesystem(f"{remote_url}/train-0.arrow")
    with fs.open(path, "rb") as f:
        table = pa.ipc.open_file(pa.py_buffer(f.read())).read_all()
    assert table.column("doc_id").to_pylist() == ["a", "b"]


def test_verify_remote_folder_names_changed_and_missing_shards(s3_url, tmp_path):
    from pipeline import storage

    (tmp_path / "tok").mkdir()
    _shard_folder(s3_url, tmp_path / "tok")
    write_shard(f"{s3_url}/train-0.arrow", [np.array([1, 2, 0], np.uint16)], ["z"], np.dtype(np.uint16))
    storage.remove([f"{s3_url}/val-0.arrow"])
    problems = verify_shards(s3_url)
    assert any(p.startswith("train/train-0.arrow: ") and "bytes, the manifest says" in p for p in problems)
    assert "val/val-0.arrow: missing" in problems
    with pytest.raises(FileNotFoundError, match="no manifest.json in s3://"):
        read_manifest(f"{s3_url}/elsewhere")


def test_local_writes_leave_no_temporary_files(tmp_path):
    (tmp_path / "tok").mkdir()
    _shard_folder(str(tmp_path / "out"), tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json",
        "tokenizer.json",
        "train-0.arrow",
        "val-0.arrow",
    ]
    assert verify_shards(str(tmp_path / "out")) == []
