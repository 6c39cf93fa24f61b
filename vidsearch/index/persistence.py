"""The index directory on disk: a manifest, and snapshots replaced atomically.

Layout::

    <dir>/CURRENT                    name of the live snapshot (one line)
    <dir>/snapshot-000042/           manifest.json, index.faiss, metadata.sqlite
    <dir>/.tmp-000043-<random>/      a save in progress (ignored by readers, removed by the next save)
    <dir>/.lock                      taken (flock) by a saver, so that saves from several processes queue

A save writes a fresh temporary directory, fsyncs its files and itself, renames it to its snapshot
name, then swaps CURRENT (write, fsync, rename, fsync the directory). Until that last rename readers
see the old snapshot, which is deleted only afterwards; a crash at any moment leaves a loadable
directory holding either the old or the new contents.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from vidsearch.errors import IndexFormatError, IndexMismatchError
from vidsearch.formats.atomic import fsync_path, write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.sqlite"
_SNAPSHOT = re.compile(r"^snapshot-(\d{6,})$")
_TMP_PREFIX = ".tmp-"
_LOCK = ".lock"
_OPEN_ATTEMPTS = 3

T = TypeVar("T")


@dataclass(frozen=True)
class Manifest:
    """What a snapshot holds; enough to refuse an index built for another model before reading it."""

    dim: int
    count: int
    factory: str
    model: str
    model_checksum: str
    faiss_version: str
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    files: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        payload = asdict(self)
        payload["params"] = dict(self.params)
        payload["files"] = dict(self.files)
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> Manifest:
        try:
            payload: dict[str, Any] = json.loads(text)
            manifest = cls(**payload)
        except (ValueError, TypeError) as exc:
            raise IndexFormatError(f"{source}: unreadable manifest ({exc})") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{source}: index format version {manifest.format_version}, this vidsearch reads "
                f"version {FORMAT_VERSION}; rebuild the index with `vidsearch index build`"
            )
        return manifest

    def check_compatible(
        self, *, dim: int | None, model: str | None, model_checksum: str | None, source: Path
    ) -> None:
        """Refuse an index built for another embedding model or dimension, naming both sides."""
        if dim is not None and dim != self.dim:
            raise IndexMismatchError(f"{source}: index holds {self.dim}-d vectors, expected {dim}-d")
        if model is not None and model != self.model:
            raise IndexMismatchError(
                f"{source}: index was built with embedding model {self.model!r}, expected {model!r}"
            )
        if model_checksum is not None and model_checksum != self.model_checksum:
            raise IndexMismatchError(
                f"{source}: index was built with model checksum {self.model_checksum!r}, "
                f"expected {model_checksum!r}"
            )


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One saver per directory at a time, across processes (readers never wait)."""
    with open(directory / _LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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


def current_snapshot(directory: Path) -> Path:
    """The live snapshot directory, or IndexFormatError if `directory` is not an index directory."""
    try:
        name = (directory / CURRENT).read_text().strip()
    except FileNotFoundError:
        raise IndexFormatError(f"{directory}: not a vidsearch index directory (no {CURRENT} file)") from None
    if not _SNAPSHOT.match(name):
        raise IndexFormatError(f"{directory}/{CURRENT}: names no snapshot ({name!r})")
    return directory / name


def read_manifest(snapshot: Path) -> Manifest:
    """Read and check a snapshot's manifest, including that its files have their recorded sizes."""
    manifest = Manifest.from_json((snapshot / MANIFEST).read_text(), snapshot / MANIFEST)
    for name, size in manifest.files.items():
        actual = (snapshot / name).stat().st_size
        if actual != size:
            raise IndexFormatError(f"{snapshot / name}: {actual} bytes, manifest says {size}")
    return manifest


def load_snapshot(directory: Path, opener: Callable[[Path, Manifest], T]) -> T:
    """Open the live snapshot; retried if a concurrent save replaces it between the two reads."""
    for attempt in range(_OPEN_ATTEMPTS):
        snapshot = current_snapshot(directory)
        try:
            return opener(snapshot, read_manifest(snapshot))
        except FileNotFoundError:
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            log.info("snapshot %s was replaced while opening it; retrying", snapshot.name)
    raise AssertionError("unreachable")


def save_snapshot(directory: Path, write: Callable[[Path], Manifest]) -> Path:
    """Write a new snapshot atomically and make it the live one; returns its directory.

    `write(tmp)` writes the data files into `tmp` and returns the manifest (without `files`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory):
        _remove_stale(directory, keep=_live_or_none(directory))
        generations = _generations(directory)
        generation = max(generations, default=0) + 1
        tmp = directory / f"{_TMP_PREFIX}{generation:06d}-{secrets.token_hex(4)}"
        tmp.mkdir()
        manifest = write(tmp)
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(replace(manifest, files=sizes).to_json())
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
