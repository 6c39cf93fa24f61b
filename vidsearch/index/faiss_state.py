"""What an open `FaissClipIndex` is made of, and how it is loaded from a snapshot on disk.

Loading checks what the manifest promises before anything is served: every file present, of its
size and (see `persistence.read_index_manifest`) digest; FAISS's vector count and SQLite's row count equal
to the manifest's `count`. A writer works on a copy of the metadata in `<dir>/.work`, which the next
writer removes (it holds the directory's lock, so nobody else can be using it).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from vidsearch.errors import ConfigError, IndexDeviceError, IndexFormatError
from vidsearch.formats.index_manifest import IndexManifest
from vidsearch.index.base import GpuPolicy
from vidsearch.index.changelog import ChangeLog
from vidsearch.index.factory import Placement, place, runs_on_gpu
from vidsearch.index.metadata import MetadataStore
from vidsearch.index.persistence import INDEX_FILE, MANIFEST, METADATA_FILE, WORK_DIR, WriterLock
from vidsearch.index.scratch import make_scratch

log = logging.getLogger(__name__)

MMAP_MIN_BYTES = 1 << 30
"""A reader memory-maps index files at least this large (read-only) unless the caller says otherwise;
a writer, or a reader with logged changes to replay, reads them into memory."""


@dataclass(frozen=True)
class IndexConfig:
    """A new, empty index: what it embeds and how it is built.

    `factory` None picks the type for `expected_clips` (see `factory.choose_factory`).
    """

    dim: int
    model: str
    model_checksum: str = ""
    factory: str | None = None
    expected_clips: int = 0
    gpu: GpuPolicy = GpuPolicy.AUTO

    def __post_init__(self) -> None:
        if self.dim < 1 or not self.model:
            raise ConfigError(f"an index needs dim >= 1 and a model name: {self.dim}, {self.model!r}")


@dataclass(frozen=True)
class OpenOptions:
    """How to open an index directory.

    `read_only` takes no writer lock (several readers may share a directory). `mmap` None maps the
    index file of a reader with nothing to replay from MMAP_MIN_BYTES; a mapped index is read-only.
    `expect_*` refuse an index built for another embedding model (IndexMismatchError). `log_changes`:
    a writable index logs each change durably before returning (False: changes stay in memory until
    `save`). `verify` None checks file digests of snapshots up to `verify_max_bytes` (None:
    `persistence.VERIFY_ON_OPEN_MAX_BYTES`), True always, False never; `verify_in_background` checks
    a larger one's after opening, the index refusing searches and changes (IndexUnavailableError)
    until they pass. `work_dir` holds a reader's scratch copy of the metadata, when it must replay
    logged changes.
    """

    read_only: bool = False
    mmap: bool | None = None
    gpu: GpuPolicy = GpuPolicy.AUTO
    expect_dim: int | None = None
    expect_model: str | None = None
    expect_model_checksum: str | None = None
    log_changes: bool = True
    verify: bool | None = None
    verify_max_bytes: int | None = None
    verify_in_background: bool = False
    work_dir: Path | None = None


@dataclass
class IndexState:
    """What an open index is made of (one object, so the constructor stays small)."""

    placement: Placement
    store: MetadataStore
    manifest: IndexManifest
    read_only: bool
    directory: Path | None = None
    scratch: Path | None = None
    size_bytes: int = 0
    gpu: GpuPolicy = GpuPolicy.AUTO
    snapshot: str = "new"
    lock: WriterLock | None = None
    log: ChangeLog | None = None


def apply_params(index: Any, params: Any) -> None:
    """Set the recorded default search parameters (nprobe, efSearch) on the index itself."""
    space = faiss.ParameterSpace()
    for name, faiss_name in (("nprobe", "nprobe"), ("ef_search", "efSearch")):
        if name in params:
            space.set_index_parameter(index, faiss_name, int(params[name]))


def release(state: IndexState) -> None:
    """Close the metadata, the log and the lock, and remove the scratch copy (idempotent)."""
    state.store.close()
    if state.log is not None:
        state.log.close()
    if state.scratch is not None:
        shutil.rmtree(state.scratch, ignore_errors=True)
    if state.lock is not None:
        state.lock.release()


def _read_faiss(path: Path, manifest: IndexManifest, mmap: bool) -> Any:
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise IndexFormatError(f"{path}: FAISS cannot read it ({str(exc).strip().splitlines()[-1]})") from exc
    if index.d != manifest.dim:
        raise IndexFormatError(f"{path}: holds {index.d}-d vectors, its manifest says {manifest.dim}")
    return index


def _open_store(db_path: Path, scratch: Path | None) -> MetadataStore:
    try:
        if scratch is None:
            return MetadataStore(db_path, read_only=True)
        shutil.copyfile(db_path, scratch / METADATA_FILE)
        return MetadataStore(scratch / METADATA_FILE)
    except sqlite3.DatabaseError as exc:
        raise IndexFormatError(f"{db_path}: not a readable metadata database ({exc})") from exc


def _check_counts(index: Any, store: MetadataStore, manifest: IndexManifest, snapshot: Path) -> None:
    try:
        rows, tombstones = store.count(), int(store.tombstones().size)
    except sqlite3.DatabaseError as exc:
        raise IndexFormatError(f"{snapshot / METADATA_FILE}: damaged ({exc})") from exc
    if rows != manifest.count:
        raise IndexFormatError(
            f"{snapshot / MANIFEST}: count {manifest.count}, but {METADATA_FILE} holds {rows} clips"
        )
    if int(index.ntotal) != rows + tombstones:
        raise IndexFormatError(
            f"{snapshot / INDEX_FILE}: {index.ntotal} vectors for {rows} clips and {tombstones} tombstones"
        )


def scratch_for(directory: Path, writer: bool, work_dir: Path | None) -> Path:
    """A fresh directory for a working copy of the metadata: `<dir>/.work` for the writer."""
    if not writer:
        return make_scratch(work_dir)
    work = directory / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


def open_state(
    directory: Path, snapshot: Path, manifest: IndexManifest, opts: OpenOptions, *, writable_copy: bool
) -> IndexState:
    """Load a snapshot; `writable_copy` copies the metadata to a scratch directory (writers, replays)."""
    index_path, db_path = snapshot / INDEX_FILE, snapshot / METADATA_FILE
    size = index_path.stat().st_size
    # an index bound for a GPU is read into memory (a mapped one would stay on the CPU)
    for_gpu = opts.gpu is GpuPolicy.REQUIRE or runs_on_gpu(opts.gpu)
    mapped_by_size = size >= MMAP_MIN_BYTES and not writable_copy and not for_gpu
    mmap = opts.mmap if opts.mmap is not None else mapped_by_size
    if mmap and opts.gpu is GpuPolicy.REQUIRE:
        raise IndexDeviceError(f"{index_path}: a memory-mapped index stays on the CPU; open it with "
                               "mmap=False to run it on the GPU")
    index = _read_faiss(index_path, manifest, mmap)
    apply_params(index, manifest.params)
    read_only = opts.read_only or mmap
    scratch = scratch_for(directory, not read_only, opts.work_dir) if writable_copy and not mmap else None
    store = _open_store(db_path, scratch)
    try:
        _check_counts(index, store, manifest, snapshot)
        placement = place(index, GpuPolicy.NEVER if mmap else opts.gpu)
    except (IndexFormatError, ConfigError):  # damage, or no GPU for device gpu: nothing is left open
        store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    log.info(
        "opened %s: %d clips, %s on %s%s",
        snapshot,
        manifest.count,
        manifest.factory,
        placement.device,
        " (memory-mapped)" if mmap else "",
    )
    return IndexState(
        placement, store, manifest, read_only, directory, scratch, size, opts.gpu, snapshot.name
    )
