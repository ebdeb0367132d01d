"""Shard folders and run folders at URLs (s3://...), for a trainer that reads and writes local files.

The loader memory-maps shards, so a remote shard folder is first copied into a local cache, every file
checked against the manifest's sha256; a file already checked is not hashed again while its size and the
manifest's sha256 still match the record kept beside it. A remote run folder is staged in the cache:
training writes there, and each checkpoint save uploads the run's files, each whole or not at all.

The cache (`--cache-dir`, else $TOKENMILL_CACHE, else ~/.cache/tokenmill) holds one folder per URL:
`shards/<name>-<hash>/` and `runs/<name>-<hash>/`. Local paths are used in place, never copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from pipeline import storage
from pipeline.config import UsageError
from tokenizer.shards import MANIFEST_FILE, Manifest, sha256_file

log = logging.getLogger(__name__)

CACHE_ENV = "TOKENMILL_CACHE"
VERIFIED_FILE = ".verified.json"  # in a cached shard folder: file -> {"sha256", "size"} already checked
SOURCES_FILE = ".sources.json"  # in a staged run folder: file -> the remote and local versions last synced


def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tokenmill")


def cache_folder(cache_dir: str | None, kind: str, url: str) -> str:
    """The cache folder of a URL: readable (the URL's tail) and unique (a hash of the whole URL)."""
    url = storage.normalize(url)
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1])[-60:].strip("_.")
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return os.path.join(cache_dir or default_cache_dir(), kind, f"{tail}-{digest}")


def copy_file(src: str, dst_url: str) -> None:
    """Copy a local file to a local path or a URL, whole or not at all (pipeline.storage.atomic_write)."""
    with open(src, "rb") as f, storage.atomic_write(dst_url) as out:
        shutil.copyfileobj(f, out, 1 << 20)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no record (or a damaged one) only costs a check or a download


# ---------------------------------------------------------------------------------------------------------
# shard folders


def local_shards(url: str, cache_dir: str | None = None) -> str:
    """A local folder holding the shard folder `url`: the folder itself when local, else a verified copy.

    Files of the cached folder that the manifest no longer names (an older version of the folder) are
    removed; its manifest.json is written last, once every file it names is in place and checked.
    """
    if storage.is_local(url):
        return url
    try:
        manifest_bytes = storage.read_bytes(storage.join(url, MANIFEST_FILE))
    except FileNotFoundError:
        raise UsageError(f"no {MANIFEST_FILE} in {url}: is it a tokenmill shard folder?") from None
    try:
        manifest = Manifest.from_json(json.loads(manifest_bytes))
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{url}: unreadable {MANIFEST_FILE} ({e})") from None
    folder = cache_folder(cache_dir, "shards", url)
    os.makedirs(folder, exist_ok=True)
    wanted = {manifest.tokenizer.file: manifest.tokenizer.sha256}
    wanted.update({s.file: s.sha256 for shards in manifest.splits.values() for s in shards})
    for name in set(os.listdir(folder)) - set(wanted) - {MANIFEST_FILE, VERIFIED_FILE}:
        os.remove(os.path.join(folder, name))
    record_path = os.path.join(folder, VERIFIED_FILE)
    verified = {k: v for k, v in _read_json(record_path).items() if k in wanted}
    fetched = 0
    for name, sha256 in wanted.items():
        path = os.path.join(folder, name)
        size = os.path.getsize(path) if os.path.exists(path) else None
        record = verified.get(name)
        if record == {"sha256": sha256, "size": size}:
            continue
        # without a record, a copy an interrupted run left may be right: hash it rather than download it
        if size is None or record is not None or sha256_file(path) != sha256:
            _download_checked(storage.join(url, name), path, sha256)
            fetched += 1
        verified[name] = {"sha256": sha256, "size": os.path.getsize(path)}
        storage.write_json(record_path, verified)  # per file: an interrupted copy keeps what it checked
    manifest_path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.exists(manifest_path) or Path(manifest_path).read_bytes() != manifest_bytes:
        storage.write_bytes(manifest_path, manifest_bytes)
    log.info("shards: %s in %s (%d of %d files downloaded)", url, folder, fetched, len(wanted))
    return folder


def _download_checked(url: str, path: str, sha256: str) -> None:
    """Download and hash; once more on a mismatch (a torn read), then give up in one line."""
    for _ in range(2):
        try:
            storage.download(url, path)
        except FileNotFoundError:
            raise UsageError(f"{url} is named in {MANIFEST_FILE} but does not exist") from None
        got = sha256_file(path)
        if got == sha256:
            return
    os.remove(path)
    raise UsageError(
        f"{url}: sha256 {got[:12]}... differs from {MANIFEST_FILE}'s {sha256[:12]}... on two downloads: "
        "the shard folder is damaged or was rewritten (rerun tokenize)"
    )


# ---------------------------------------------------------------------------------------------------------
# run folders


class RunFolder:
    """Where a pretrain run's files are written (`local`) and where they belong (`url`).

    A local run folder is both. A remote one is staged in the cache: `pull` brings remote files down
    (unless the staged copy is already that version), `push` uploads staged files.
    """

    def __init__(self, url: str, cache_dir: str | None = None) -> None:
        self.remote = not storage.is_local(url)
        self.url = storage.normalize(url) if self.remote else url
        self.local = cache_folder(cache_dir, "runs", url) if self.remote else url
        self._sources_path = os.path.join(self.local, SOURCES_FILE)

    def file(self, name: str) -> str:
        """The local path to read and write `name` at."""
        return os.path.join(self.local, name)

    def url_of(self, name: str) -> str:
        return storage.join(self.url, name)

    def exists(self, name: str) -> bool:
        return storage.exists(self.url_of(name))

    def _local_version(self, name: str) -> list[int] | None:
        path = self.file(name)
        return [os.path.getsize(path), os.stat(path).st_mtime_ns] if os.path.exists(path) else None

    def pull(self, *names: str) -> list[str]:
        """Make the staged copies of `names` the remote files; returns the names the remote lacks."""
        if not self.remote:
            return [n for n in names if not os.path.exists(self.file(n))]
        os.makedirs(self.local, exist_ok=True)
        sources = _read_json(self._sources_path)
        missing = []
        for name in names:
            try:
                remote = storage.info(self.url_of(name)).identity()
            except FileNotFoundError:
                missing.append(name)
                if os.path.exists(self.file(name)):
                    os.remove(self.file(name))
                sources.pop(name, None)
                continue
            if sources.get(name) != {"remote": remote, "local": self._local_version(name)}:
                storage.download(self.url_of(name), self.file(name))
                sources[name] = {"remote": remote, "local": self._local_version(name)}
        storage.write_json(self._sources_path, sources)
        return missing

    def push(self, *names: str) -> None:
        """Upload the staged `names` (in this order), each whole or not at all; nothing to do when local."""
        if not self.remote:
            return
        sources = _read_json(self._sources_path)
        for name in names:
            copy_file(self.file(name), self.url_of(name))
            # what was uploaded is what is staged: a resume here need not download it again
            sources[name] = {
                "remote": storage.info(self.url_of(name)).identity(),
                "local": self._local_version(name),
            }
        storage.write_json(self._sources_path, sources)

    def names(self) -> set[str]:
        """The files of the run folder: remote ones and staged ones (a remote folder may lag its stage)."""
        names = set(os.listdir(self.local)) if os.path.isdir(self.local) else set()
        if self.remote:
            names |= {rel for rel in storage.list_tree(self.url) if "/" not in rel}
        return names - {SOURCES_FILE}

    def copy(self, src: str, dst: str) -> None:
        """Make remote `dst` a copy of the already pushed `src` (server-side: no second upload)."""
        if not self.remote:
            return
        storage.copy(self.url_of(src), self.url_of(dst))
        sources = _read_json(self._sources_path)
        sources[dst] = {
            "remote": storage.info(self.url_of(dst)).identity(),
            "local": self._local_version(dst),
        }
        storage.write_json(self._sources_path, sources)

    def remove(self, *names: str) -> None:
        """Delete `names` here and, for a remote folder, there."""
        for name in names:
            if os.path.exists(self.file(name)):
                os.remove(self.file(name))
        if self.remote and names:
            storage.remove([self.url_of(n) for n in names])
            sources = _read_json(self._sources_path)
            storage.write_json(self._sources_path, {k: v for k, v in sources.items() if k not in names})
