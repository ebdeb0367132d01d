"""Paths through fsspec: local folders, s3:// (s3fs, the standard AWS_* variables) and memory:// alike.

One writer for every file a stage commits (`atomic_write`): on a local disk it writes a temporary name
unique to the attempt and renames it into place; on an object store a PUT is already atomic, so it writes
the final name and aborts the upload if the writer fails. One recursive listing (`list_tree`) tells the
stage driver everything it needs to know about an output folder, so a 90,000-task stage does not send
one request per marker.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

TMP_MARK = ".tmp-"  # an attempt's file before its rename: `part-x.parquet.tmp-<uuid>`


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path within it."""
    return fsspec.core.url_to_fs(url)


def is_local(url: str) -> bool:
    return isinstance(filesystem(url)[0], LocalFileSystem)


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def to_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path the filesystem returned, as a URL any stage (or a user) can pass back in."""
    if isinstance(fs, LocalFileSystem):
        return path
    protocol = _protocol(fs)
    return path if path.startswith(f"{protocol}://") else f"{protocol}://{path.lstrip('/')}"


def normalize(url: str) -> str:
    """Absolute local paths and canonical URLs, so one folder never has two names in a fingerprint."""
    fs, path = filesystem(url)
    return to_url(fs, path.rstrip("/") or "/")


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class FileInfo:
    """A file as one listing shows it; `version` (ETag, else mtime) changes when its bytes do."""

    url: str
    size: int
    version: str

    def identity(self) -> dict[str, Any]:
        return {"path": self.url, "size": self.size, "version": self.version}


def _info(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> FileInfo:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        version = f"etag:{str(etag).strip(chr(34))}"
    elif info.get("mtime") is not None:
        version = f"mtime:{float(info['mtime']):.6f}"
    else:
        version = f"created:{info.get('created') or info.get('LastModified') or ''}"
    return FileInfo(to_url(fs, path), int(info.get("size") or 0), version)


def list_tree(url: str) -> dict[str, FileInfo]:
    """Every file below `url` keyed by its path relative to it, from one recursive listing ({} if absent)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    try:
        found = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    out = {}
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = path[len(root) :].lstrip("/") if path.startswith(root) else path
        out[rel] = _info(fs, path, info)
    return out


def list_inputs(item: str, suffixes: tuple[str, ...]) -> list[FileInfo]:
    """A file, a folder (its files ending in one of `suffixes`, recursively) or a glob, with identities."""
    fs, path = filesystem(item)
    if any(ch in path for ch in "*?["):
        found = fs.glob(path, detail=True)
    elif fs.isdir(path):
        found = {p: i for p, i in fs.find(path, detail=True).items() if p.endswith(suffixes)}
    elif fs.isfile(path):
        found = {path: fs.info(path)}
    else:
        raise FileNotFoundError(f"no such input: {item}")
    return [_info(fs, p, i) for p, i in sorted(found.items()) if i.get("type") != "directory"]


def subfolders(url: str) -> list[str]:
    """The folders directly inside `url`, as URLs, sorted ([] if it is not a folder)."""
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return sorted(to_url(fs, e["name"]) for e in entries if e.get("type") == "directory")


def glob(pattern: str) -> list[str]:
    fs, path = filesystem(pattern)
    return sorted(to_url(fs, p) for p in fs.glob(path))


def info(url: str) -> FileInfo:
    fs, path = filesystem(url)
    return _info(fs, path, fs.info(path))


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


@contextmanager
def atomic_write(url: str, mode: str = "wb") -> Iterator[IO]:
    """Open `url` for writing; readers see the whole file or the previous one, never a part."""
    fs, path = filesystem(url)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
        try:
            with open(tmp, mode) as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    f = fs.open(path, mode)
    try:
        yield f
    except BaseException:
        # an object store shows an object once its upload completes: abort it instead of completing it
        # (a file without discard() is left unclosed: closing is what would commit it)
        if hasattr(f, "discard"):
            f.discard()
            f.closed = True  # or the garbage collector's close() would try to finish the upload
        raise
    f.close()


def write_bytes(url: str, data: bytes) -> None:
    with atomic_write(url) as f:
        f.write(data)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


def write_json(url: str, data: Any) -> None:
    write_bytes(url, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(url: str) -> Any:
    return json.loads(read_bytes(url))


def read_many(urls: list[str]) -> dict[str, bytes]:
    """Several small files at once (s3fs fetches them concurrently); url -> bytes."""
    if not urls:
        return {}
    fs, _ = filesystem(urls[0])
    paths = [filesystem(u)[1] for u in urls]
    got = fs.cat(paths, on_error="raise")
    return {u: got[p] for u, p in zip(urls, paths, strict=True)}


def remove(urls: Iterable[str]) -> None:
    """Delete files (batched into bulk requests on object stores); a missing one is not an error."""
    urls = list(urls)
    if not urls:
        return
    fs, _ = filesystem(urls[0])
    paths = [filesystem(u)[1] for u in urls]
    try:
        fs.rm(paths)
    except FileNotFoundError:
        for p in paths:
            if fs.exists(p):
                fs.rm_file(p)


def remove_tree(url: str) -> None:
    """Delete a folder and everything in it; a missing one is not an error."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def copy(src_url: str, dst_url: str) -> None:
    """Copy a file within one filesystem (on an object store a server-side copy: nothing is downloaded);
    the destination appears whole."""
    fs, src = filesystem(src_url)
    _, dst = filesystem(dst_url)
    if isinstance(fs, LocalFileSystem):
        with open(src, "rb") as f, atomic_write(dst_url) as out:
            shutil.copyfileobj(f, out, 1 << 20)
        return
    fs.copy(src, dst)


def download(url: str, local_path: str) -> None:
    """Copy one file to a local path (atomically: a killed copy leaves no half file)."""
    fs, path = filesystem(url)
    os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
    tmp = f"{local_path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    try:
        fs.get_file(path, tmp)
        os.replace(tmp, local_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
