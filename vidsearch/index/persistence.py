"""The index directory on disk: snapshots replaced atomically, a change log, one writer at a time.

Layout::

    <dir>/CURRENT                    name of the live snapshot (one line)
    <dir>/snapshot-000042/           manifest.json, index.faiss, metadata.sqlite
    <dir>/log-000007.wal             changes acknowledged after the snapshot (see `changelog`)
    <dir>/.tmp-000043-<random>/      a save in progress (ignored by readers, removed by the next save)
    <dir>/.work/                     the writer's working copy of the metadata (removed at the next open)
    <dir>/WRITER.lock                held (flock) by the one process that may change the directory

A save writes a fresh temporary directory, fsyncs its files and itself, renames it to its snapshot
name, then swaps CURRENT (write, fsync, rename, fsync the directory). Until that last rename readers
see the old snapshot, which is deleted only afterwards; a crash at any moment leaves a loadable
directory holding either the old or the new contents. The manifest records each file's size and
SHA-256; opening checks the sizes always and the digests below VERIFY_ON_OPEN_MAX_BYTES.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from vidsearch.errors import IndexFormatError, IndexLockedError
from vidsearch.formats.atomic import fsync_path, write_atomic
from vidsearch.formats.checksum import sha256_file
from vidsearch.formats.index_manifest import FileEntry, IndexManifest

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.sqlite"
WORK_DIR = ".work"
WRITER_LOCK = "WRITER.lock"
REQUIRED_FILES = (INDEX_FILE, METADATA_FILE)
VERIFY_ON_OPEN_MAX_BYTES = 1 << 30
"""Snapshots up to this size have every digest checked when opened (about 1 s per GiB with SHA-NI);
larger ones only their sizes, and `vidsearch index verify` checks the digests on demand."""
_SNAPSHOT = re.compile(r"^snapshot-(\d{6,})$")
_TMP_PREFIX = ".tmp-"
_OPEN_ATTEMPTS = 3

T = TypeVar("T")


class WriterLock:
    """The exclusive right to change an index directory, held (flock) for the life of the writer.

    The kernel drops it when the process dies, so a crashed writer never leaves a stale lock behind.
    Readers take no lock: they see whole snapshots only.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        path = directory / WRITER_LOCK
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = path.read_text().strip() or "another process"
            raise IndexLockedError(
                f"{directory} is being changed by {holder} (it holds {path}); one writer per index "
                "directory: stop it, or open this one read-only"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"process {os.getpid()}\n".encode())

    def release(self) -> None:
        """Give up the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def generation_of(snapshot: Path) -> int:
    match = _SNAPSHOT.match(snapshot.name)
    if match is None:
        raise IndexFormatError(f"{snapshot}: not a snapshot directory name")
    return int(match.group(1))


def _generations(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in directory.iterdir():
        match = _SNAPSHOT.match(child.name)
        if match and child.is_dir():
            found[int(match.group(1))] = child
    return found


def _remove_stale(directory: Path, keep: Path | None) -> None:
    for child in directory.iterdir():
        stale_snapshot = _SNAPSHOT.match(child.name) and child != keep
        if (stale_snapshot or child.name.startswith(_TMP_PREFIX)) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def is_index_directory(directory: Path) -> bool:
    return (directory / CURRENT).exists()


def current_snapshot(directory: Path) -> Path:
    """The live snapshot directory; IndexFormatError if CURRENT is missing, garbage or dangling."""
    pointer = directory / CURRENT
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        raise IndexFormatError(f"{directory}: not a vidsearch index directory (no {CURRENT} file)") from None
    except OSError as exc:
        raise IndexFormatError(f"{pointer}: unreadable ({exc.strerror})") from exc
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if not _SNAPSHOT.match(name):
        raise IndexFormatError(f"{pointer}: names no snapshot ({raw[:64]!r})")
    snapshot = directory / name
    if not snapshot.is_dir():
        raise IndexFormatError(f"{pointer}: names {name}, which does not exist (a dangling pointer)")
    return snapshot


def read_index_manifest(
    snapshot: Path, *, verify: bool | None = None, verify_max_bytes: int | None = None
) -> IndexManifest:
    """Read a snapshot's manifest and check its files: present, of their recorded sizes, and (when
    `verify`, or None and the snapshot holds at most `verify_max_bytes`, default
    VERIFY_ON_OPEN_MAX_BYTES) of their recorded SHA-256 digests."""
    path = snapshot / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: missing (the snapshot is incomplete)") from None
    manifest = IndexManifest.from_json(data, path)
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing:
        raise IndexFormatError(f"{path}: lists no {', '.join(missing)}")
    for name, entry in manifest.files.items():
        try:
            actual = (snapshot / name).stat().st_size
        except FileNotFoundError:
            raise IndexFormatError(f"{snapshot / name}: missing (the manifest lists it)") from None
        if actual != entry.bytes:
            raise IndexFormatError(f"{snapshot / name}: {actual} bytes, the manifest says {entry.bytes}")
    if verify if verify is not None else not is_large(manifest, verify_max_bytes):
        verify_files(snapshot, manifest)
    return manifest


def is_large(manifest: IndexManifest, verify_max_bytes: int | None = None) -> bool:
    """Whether a snapshot is too large to have its digests checked while it is opened."""
    limit = VERIFY_ON_OPEN_MAX_BYTES if verify_max_bytes is None else verify_max_bytes
    return manifest.total_bytes > limit


def verify_files(snapshot: Path, manifest: IndexManifest) -> None:
    """Check every file's SHA-256 against the manifest; IndexFormatError names the first that differs."""
    for name, entry in manifest.files.items():
        digest = sha256_file(snapshot / name)
        if digest != entry.sha256:
            raise IndexFormatError(
                f"{snapshot / name}: damaged (SHA-256 {digest[:16]}…, the manifest says {entry.sha256[:16]}…)"
            )


def load_snapshot(directory: Path, opener: Callable[[Path, IndexManifest], T], *, verify: bool | None,
                  verify_max_bytes: int | None = None) -> T:
    """Open the live snapshot; retried if a concurrent save replaces it between the reads."""
    for attempt in range(_OPEN_ATTEMPTS):
        snapshot = current_snapshot(directory)
        try:
            manifest = read_index_manifest(snapshot, verify=verify, verify_max_bytes=verify_max_bytes)
            return opener(snapshot, manifest)
        except (IndexFormatError, FileNotFoundError) as exc:
            replaced = _live_or_none(directory) != snapshot
            if not replaced or attempt == _OPEN_ATTEMPTS - 1:
                if isinstance(exc, FileNotFoundError):
                    raise IndexFormatError(f"{exc.filename}: missing") from exc
                raise
            log.info("snapshot %s was replaced while opening it; retrying", snapshot.name)
    raise AssertionError("unreachable")


def save_snapshot(directory: Path, write: Callable[[Path], IndexManifest]) -> Path:
    """Write a new snapshot atomically and make it the live one; returns its directory.

    The caller holds the directory's WriterLock. `write(tmp)` writes the data files into `tmp` and
    returns the manifest (without `files`, which are measured and digested here).
    """
    _remove_stale(directory, keep=_live_or_none(directory))
    generation = max(_generations(directory), default=0) + 1
    tmp = directory / f"{_TMP_PREFIX}{generation:06d}-{secrets.token_hex(4)}"
    tmp.mkdir()
    manifest = write(tmp)
    files = {p.name: FileEntry(p.stat().st_size, sha256_file(p)) for p in sorted(tmp.iterdir())}
    (tmp / MANIFEST).write_text(replace(manifest, files=files).to_json())
    for path in tmp.iterdir():
        fsync_path(path)
    fsync_path(tmp, directory=True)
    snapshot = directory / f"snapshot-{generation:06d}"
    os.rename(tmp, snapshot)
    fsync_path(directory, directory=True)
    write_atomic(directory / CURRENT, snapshot.name + "\n")
    _remove_stale(directory, keep=snapshot)
    log.info("saved %s (%d clips)", snapshot, manifest.count)
    return snapshot


def _live_or_none(directory: Path) -> Path | None:
    try:
        return current_snapshot(directory)
    except IndexFormatError:
        return None
