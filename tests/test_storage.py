"""pipeline/storage.py against a local folder and the session's real S3 server (SeaweedFS) alike."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.storage import TMP_MARK


class WriterFailed(Exception):
    pass


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty folder: a local path or an s3:// bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_url")


def test_s3_fixture_is_the_standard_aws_environment(s3_server, s3_url: str) -> None:
    # No tokenmill-specific setting: s3fs finds the server through AWS_ENDPOINT_URL alone.
    import s3fs

    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe(f"{s3_url[5:]}/x", b"seen")
    assert storage.read_bytes(f"{s3_url}/x") == b"seen"
    assert not storage.is_local(s3_url) and storage.is_local("/tmp")


def test_atomic_write_then_read(root: str) -> None:
    url = storage.join(root, "a", "b.json")
    storage.write_json(url, {"k": [1, 2], "text": "ünïcödé"})
    assert storage.read_json(url) == {"k": [1, 2], "text": "ünïcödé"}
    with storage.atomic_write(storage.join(root, "t.txt"), "w") as f:
        f.write("text mode")
    assert storage.read_bytes(storage.join(root, "t.txt")) == b"text mode"
    assert storage.exists(url) and not storage.exists(storage.join(root, "nope"))


def test_failing_writer_leaves_no_file_and_keeps_the_previous_version(root: str) -> None:
    new, old = storage.join(root, "new.bin"), storage.join(root, "old.bin")
    storage.write_bytes(old, b"version 1")
    for url in (new, old):
        with pytest.raises(WriterFailed), storage.atomic_write(url) as f:
            f.write(b"half of version 2")
            raise WriterFailed
    gc.collect()  # an abandoned upload must not be committed when its file object is collected either
    assert not storage.exists(new)
    assert storage.read_bytes(old) == b"version 1"
    assert list(storage.list_tree(root)) == ["old.bin"]  # and no temporary file is left behind


def test_list_tree_is_every_file_by_relative_path(root: str) -> None:
    assert storage.list_tree(root) == {}
    files = {"top.txt": b"1", "sub/a.txt": b"22", "sub/deeper/b.bin": b"333"}
    for rel, data in files.items():
        storage.write_bytes(storage.join(root, rel), data)
    tree = storage.list_tree(root)
    assert sorted(tree) == sorted(files)
    for rel, data in files.items():
        info = tree[rel]
        assert info.size == len(data)
        assert storage.read_bytes(info.url) == data  # the listed URL reads back the file
        assert info.identity() == {"path": info.url, "size": len(data), "version": info.version}
    assert storage.list_tree(storage.join(root, "sub")).keys() == {"a.txt", "deeper/b.bin"}


def test_version_changes_when_the_bytes_do(root: str) -> None:
    url = storage.join(root, "f.txt")
    storage.write_bytes(url, b"one")
    first = storage.info(url)
    if storage.is_local(url):
        os.utime(url, (1, 1))  # mtime resolution must not hide a rewrite in the same instant
        first = storage.info(url)
    storage.write_bytes(url, b"two")
    second = storage.info(url)
    assert first.size == second.size == 3 and first.version != second.version


def test_list_inputs_folder_glob_and_file(root: str) -> None:
    for rel in ("in/a.warc.gz", "in/b.warc", "in/skip.txt", "in/sub/c.warc.gz"):
        storage.write_bytes(storage.join(root, rel), rel.encode())
    folder = storage.list_inputs(storage.join(root, "in"), (".warc", ".warc.gz"))
    names = [i.url.rsplit("/", 1)[-1] for i in folder]
    assert names == ["a.warc.gz", "b.warc", "c.warc.gz"]
    globbed = storage.list_inputs(storage.join(root, "in", "*.warc.gz"), (".warc",))
    assert [i.url for i in globbed] == [storage.join(root, "in", "a.warc.gz")]
    assert globbed[0].size == len(b"in/a.warc.gz")
    one = storage.list_inputs(storage.join(root, "in", "skip.txt"), (".warc",))
    assert [i.url for i in one] == [storage.join(root, "in", "skip.txt")]
    with pytest.raises(FileNotFoundError, match="no such input"):
        storage.list_inputs(storage.join(root, "missing"), (".warc",))


def test_read_many_and_remove(root: str) -> None:
    urls = [storage.join(root, f"m/{i}.json") for i in range(5)]
    for i, url in enumerate(urls):
        storage.write_json(url, {"i": i})
    got = storage.read_many(urls)
    assert list(got) == urls and [storage.read_json(u) for u in urls] == [{"i": i} for i in range(5)]
    assert storage.read_many([]) == {}
    storage.remove([*urls[:3], storage.join(root, "m/never-written.json")])  # a missing one is fine
    assert sorted(storage.list_tree(storage.join(root, "m"))) == ["3.json", "4.json"]
    storage.remove([])


def test_download_is_a_whole_local_copy(root: str, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    url = storage.join(root, "big.bin")
    storage.write_bytes(url, data)
    local = tmp_path / "copies" / "big.bin"
    storage.download(url, str(local))
    assert local.read_bytes() == data
    assert [p.name for p in local.parent.iterdir()] == ["big.bin"]
    with pytest.raises(FileNotFoundError):
        storage.download(storage.join(root, "absent.bin"), str(tmp_path / "absent.bin"))
    assert not any(TMP_MARK in p.name for p in tmp_path.rglob("*"))


@pytest.mark.ray
def test_ray_workers_of_the_session_head_reach_s3(ray_head, s3_url: str) -> None:
    """The head starts after the S3 fixture set the AWS variables: its workers inherit them."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_head["address"], logging_level="WARNING")
    storage.write_bytes(f"{s3_url}/from-driver", b"hello worker")

    @ray.remote(num_cpus=0)
    def read(url: str) -> tuple[str | None, bytes]:
        return os.environ.get("AWS_ENDPOINT_URL"), storage.read_bytes(url)

    assert ray.get(read.remote(f"{s3_url}/from-driver")) == (os.environ["AWS_ENDPOINT_URL"], b"hello worker")
