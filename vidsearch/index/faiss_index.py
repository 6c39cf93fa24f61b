"""`FaissClipIndex`: the `ClipIndex` of one machine, a FAISS index plus its SQLite metadata store.

FAISS holds the L2-normalised vectors under int64 ids; SQLite maps those ids to the users' string clip
ids and their metadata. Every change goes to both inside one SQLite transaction, so a failed FAISS call
rolls the metadata back. Index types that cannot delete (HNSW, GPU indexes) keep tombstones, which every
search excludes with the same ID-selector machinery as filters.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vidsearch.errors import (
    ClipIndexError,
    ConfigError,
    IndexFormatError,
    IndexMismatchError,
    IndexReadOnlyError,
    InvalidClipError,
)
from vidsearch.index.base import (
    ClipRecord,
    GpuPolicy,
    Hit,
    IndexStats,
    SearchFilter,
    SearchOptions,
    SearchPage,
    Tuning,
    check_top_k,
    normalise_rows,
)
from vidsearch.index.factory import Placement, new_index, place, plan_index, to_cpu
from vidsearch.index.filters import FilteredSearcher, Selection
from vidsearch.index.locks import ReadWriteLock
from vidsearch.index.metadata import MetadataStore
from vidsearch.index.paging import paginate
from vidsearch.index.persistence import (
    INDEX_FILE,
    METADATA_FILE,
    Manifest,
    load_snapshot,
    save_snapshot,
)

log = logging.getLogger(__name__)

MMAP_MIN_BYTES = 1 << 30
"""Index files at least this large are memory-mapped (read-only) unless the caller says otherwise."""

_KEY_META = "page_token_key"


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

    `mmap` None maps index files of at least MMAP_MIN_BYTES; a mapped index is read-only.
    `expect_*` refuse an index built for another embedding model (IndexMismatchError).
    `work_dir` holds the writable copy of the metadata database (default: the system temp dir).
    """

    read_only: bool = False
    mmap: bool | None = None
    gpu: GpuPolicy = GpuPolicy.AUTO
    expect_dim: int | None = None
    expect_model: str | None = None
    expect_model_checksum: str | None = None
    work_dir: Path | None = None


@dataclass
class _State:
    """What an open index is made of (one object, so the constructor stays small)."""

    placement: Placement
    store: MetadataStore
    manifest: Manifest
    read_only: bool
    directory: Path | None = None
    scratch: Path | None = None
    size_bytes: int = 0
    gpu: GpuPolicy = GpuPolicy.AUTO


class FaissClipIndex:
    """A clip index on one machine (CPU, or GPUs when FAISS sees them). Thread-safe."""

    def __init__(self, state: _State) -> None:
        self._s = state
        self._lock = ReadWriteLock()
        self._rows_lock = threading.Lock()  # see `_records`
        self._searcher = FilteredSearcher(state.placement.index)
        self._tombstones = state.store.tombstones()
        self._count = state.store.count()
        key = state.store.get_meta(_KEY_META)
        self._key = bytes.fromhex(key) if key else secrets.token_bytes(32)
        # an index dropped without close() still releases its database and scratch directory
        self._release = weakref.finalize(self, _release, state.store, state.scratch)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def create(cls, config: IndexConfig) -> FaissClipIndex:
        """A new, empty index; IVF and PQ types need `train` before the first `add`."""
        plan = plan_index(config.expected_clips, config.dim, config.factory)
        index = _new_cpu_index(config.dim, plan.factory, plan.params)
        scratch = Path(tempfile.mkdtemp(prefix="vidsearch-index-"))
        store = MetadataStore(scratch / METADATA_FILE)
        with store.transaction() as conn:
            store.set_meta(conn, _KEY_META, secrets.token_hex(32))
        manifest = Manifest(
            dim=config.dim,
            count=0,
            factory=plan.factory,
            model=config.model,
            model_checksum=config.model_checksum,
            faiss_version=faiss.__version__,
            params={**plan.params, "train_size": plan.train_size},
        )
        placement = place(index, config.gpu) if index.is_trained else Placement(index, "cpu")
        return cls(_State(placement, store, manifest, read_only=False, scratch=scratch, gpu=config.gpu))

    @classmethod
    def open(cls, directory: Path, options: OpenOptions | None = None) -> FaissClipIndex:
        """Open the live snapshot of an index directory (see `persistence`)."""
        opts = options or OpenOptions()

        def opener(snapshot: Path, manifest: Manifest) -> FaissClipIndex:
            manifest.check_compatible(
                dim=opts.expect_dim,
                model=opts.expect_model,
                model_checksum=opts.expect_model_checksum,
                source=directory,
            )
            return cls(_open_state(directory, snapshot, manifest, opts))

        return load_snapshot(directory, opener)

    # -- properties ------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._s.manifest.dim

    @property
    def model(self) -> str:
        return self._s.manifest.model

    @property
    def factory(self) -> str:
        return self._s.manifest.factory

    @property
    def page_token_key(self) -> bytes:
        return self._key

    @property
    def faiss_index(self) -> Any:
        """The FAISS index itself, for benchmarks and expert tuning; changing it bypasses the metadata."""
        return self._s.placement.index

    @property
    def is_trained(self) -> bool:
        return bool(self._s.placement.index.is_trained)

    def __len__(self) -> int:
        return self._count

    # -- changes ---------------------------------------------------------------------------------

    def train(self, sample: np.ndarray) -> None:
        """Train the quantisers (IVF centroids, PQ codebooks) on a sample of the vectors to come."""
        self._check_writable()
        vectors = normalise_rows(sample, self.dim, what="clip")
        with self._lock.write():
            if self.is_trained:
                raise ClipIndexError(f"the {self.factory} index is trained already")
            log.info("training %s on %d vectors", self.factory, vectors.shape[0])
            self._s.placement.index.train(vectors)
            params = {**self._s.manifest.params, "train_size": int(vectors.shape[0])}
            self._s.manifest = replace(self._s.manifest, params=params)
            self._s.placement = place(self._s.placement.index, self._s.gpu)
            self._searcher = FilteredSearcher(self._s.placement.index)

    def add(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        self._write(records, vectors, replace=False)

    def upsert(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        self._write(records, vectors, replace=True)

    def delete_clips(self, clip_ids: Iterable[str]) -> int:
        self._check_writable()
        with self._lock.write(), self._s.store.transaction() as conn:
            ids = np.fromiter(self._s.store.ids_for_clips(list(clip_ids), conn).values(), dtype=np.int64)
            self._remove(conn, ids)
        return int(ids.size)

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        self._check_writable()
        with self._lock.write(), self._s.store.transaction() as conn:
            ids = self._s.store.ids_for_videos(list(video_ids), conn)
            self._remove(conn, ids)
        return int(ids.size)

    def _write(self, records: Sequence[ClipRecord], vectors: np.ndarray, *, replace: bool) -> None:
        self._check_writable()
        vecs = normalise_rows(vectors, self.dim, what="clip")
        batch = list(records)
        _check_batch(batch, vecs.shape[0], self.model)
        if not batch:
            return
        if not self.is_trained:
            raise ClipIndexError(f"the {self.factory} index must be trained before adding (call train())")
        store = self._s.store
        with self._lock.write(), store.transaction() as conn:
            if replace:
                existing = store.ids_for_clips([r.clip_id for r in batch], conn)
                self._remove(conn, np.fromiter(existing.values(), dtype=np.int64))
            ids = store.allocate_ids(conn, len(batch))
            store.insert(conn, ids, batch)
            self._s.placement.index.add_with_ids(vecs, ids)
            self._count += len(batch)

    def _remove(self, conn: sqlite3.Connection, ids: np.ndarray) -> None:
        """Remove ids from both stores; an index that cannot delete records tombstones instead."""
        if ids.size == 0:
            return
        self._s.store.delete(conn, ids)
        try:
            self._s.placement.index.remove_ids(ids)
        except RuntimeError:
            self._s.store.add_tombstones(conn, ids)
            self._tombstones = np.union1d(self._tombstones, ids)
        self._count -= int(ids.size)

    def _check_writable(self) -> None:
        if self._s.read_only:
            where = self._s.directory or "this index"
            raise IndexReadOnlyError(f"{where} is open read-only (memory-mapped); open it with mmap=False")

    # -- search ----------------------------------------------------------------------------------

    def search_hits(
        self, queries: np.ndarray, k: int, search_filter: SearchFilter, tuning: Tuning
    ) -> list[list[Hit]]:
        check_top_k(k)
        vectors = normalise_rows(queries, self.dim, what="query")
        with self._lock.read():
            selection = self._selection(search_filter)
            if selection is not None and selection.allowed is not None and selection.allowed.size == 0:
                return [[] for _ in range(vectors.shape[0])]
            scores, labels = self._searcher.search(vectors, k, selection, tuning)
            records = self._records(labels[labels >= 0])
        return [
            [Hit(records[i], float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i in records]
            for row_scores, row_ids in zip(scores.tolist(), labels.tolist(), strict=True)
        ]

    def search(
        self, queries: np.ndarray, options: SearchOptions, page_tokens: Sequence[str | None] | None = None
    ) -> list[SearchPage]:
        return paginate(self.search_hits, queries, self.dim, options, page_tokens, self._key)

    def _selection(self, search_filter: SearchFilter) -> Selection | None:
        allowed = None if search_filter.is_empty else self._s.store.filter_ids(search_filter)
        if allowed is None and self._tombstones.size == 0:
            return None
        return Selection(allowed=allowed, excluded=self._tombstones)

    def get(self, clip_ids: Iterable[str]) -> dict[str, ClipRecord]:
        ids = np.fromiter(self._s.store.ids_for_clips(list(clip_ids)).values(), dtype=np.int64)
        return {record.clip_id: record for record in self._records(ids).values()}

    def _records(self, ids: np.ndarray) -> dict[int, ClipRecord]:
        """The SQLite rows of these ids, looked up by one thread at a time.

        The sqlite3 module releases the GIL at every row it steps, and with many threads searching, each
        release hands the GIL to another thread: measured with 32 threads, a 10-row lookup took 8 times
        its single-thread CPU, and searches ran 2.6 times faster with lookups one at a time.
        """
        with self._rows_lock:
            return self._s.store.records(ids)

    # -- persistence and housekeeping ------------------------------------------------------------

    def save(self, directory: Path | None = None) -> Path:
        """Write a snapshot atomically into `directory` (default: where the index was opened or saved)."""
        target = directory or self._s.directory
        if target is None:
            raise ClipIndexError("this index has no directory yet: call save(directory)")
        with self._lock.read():
            manifest = self._current_manifest()

            def write(tmp: Path) -> Manifest:
                faiss.write_index(to_cpu(self._s.placement), str(tmp / INDEX_FILE))
                self._s.store.backup_to(tmp / METADATA_FILE)
                return manifest

            snapshot = save_snapshot(target, write)
        self._s.directory = target
        self._s.size_bytes = (snapshot / INDEX_FILE).stat().st_size
        return snapshot

    def flush(self) -> None:
        self.save()

    def _current_manifest(self) -> Manifest:
        m = self._s.manifest
        return Manifest(
            dim=m.dim,
            count=self._count,
            factory=m.factory,
            model=m.model,
            model_checksum=m.model_checksum,
            faiss_version=faiss.__version__,
            params=m.params,
        )

    def stats(self) -> IndexStats:
        m = self._s.manifest
        return IndexStats(
            clips=self._count,
            videos=self._s.store.video_count(),
            dim=m.dim,
            model=m.model,
            model_checksum=m.model_checksum,
            backend=f"faiss {faiss.__version__}",
            index_type=m.factory,
            vectors=int(self._s.placement.index.ntotal),
            tombstones=int(self._tombstones.size),
            size_bytes=self._s.size_bytes,
            read_only=self._s.read_only,
            device=self._s.placement.device,
            params=dict(m.params),
        )

    def close(self) -> None:
        """Release the metadata connections and the scratch copy of the database (idempotent)."""
        self._release()

    def __enter__(self) -> FaissClipIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(store: MetadataStore, scratch: Path | None) -> None:
    store.close()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_batch(records: Sequence[ClipRecord], rows: int, model: str) -> None:
    if len(records) != rows:
        raise InvalidClipError(f"{len(records)} records for {rows} vectors")
    seen: set[str] = set()
    for record in records:
        if record.clip_id in seen:
            raise InvalidClipError(f"clip id {record.clip_id!r} appears twice in one batch")
        seen.add(record.clip_id)
        if record.model != model:
            raise IndexMismatchError(
                f"clip {record.clip_id!r} was embedded by {record.model!r}; this index holds {model!r}"
            )


def _new_cpu_index(dim: int, factory: str, params: dict[str, int]) -> Any:
    index = new_index(dim, factory)
    _apply_params(index, params)
    return index


def _apply_params(index: Any, params: dict[str, int] | Any) -> None:
    """Set the recorded default search parameters (nprobe, efSearch) on the index itself."""
    space = faiss.ParameterSpace()
    for name, faiss_name in (("nprobe", "nprobe"), ("ef_search", "efSearch")):
        if name in params:
            space.set_index_parameter(index, faiss_name, int(params[name]))


def _open_state(directory: Path, snapshot: Path, manifest: Manifest, opts: OpenOptions) -> _State:
    index_path, db_path = snapshot / INDEX_FILE, snapshot / METADATA_FILE
    for path in (index_path, db_path):
        if not path.exists():
            raise FileNotFoundError(path)
    size = index_path.stat().st_size
    mmap = opts.mmap if opts.mmap is not None else size >= MMAP_MIN_BYTES
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(index_path), flags)
    except RuntimeError as exc:
        raise IndexFormatError(f"{index_path}: FAISS cannot read it ({exc})") from exc
    if index.d != manifest.dim:
        raise IndexFormatError(f"{index_path}: holds {index.d}-d vectors, its manifest says {manifest.dim}")
    _apply_params(index, manifest.params)
    read_only = opts.read_only or mmap
    scratch = None
    if read_only:
        store = MetadataStore(db_path, read_only=True)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="vidsearch-index-", dir=opts.work_dir))
        shutil.copyfile(db_path, scratch / METADATA_FILE)
        store = MetadataStore(scratch / METADATA_FILE)
    placement = place(index, GpuPolicy.NEVER if mmap else opts.gpu)
    state = _State(placement, store, manifest, read_only, directory, scratch, size_bytes=size, gpu=opts.gpu)
    log.info(
        "opened %s: %d clips, %s on %s%s",
        snapshot,
        manifest.count,
        manifest.factory,
        placement.device,
        " (memory-mapped)" if mmap else "",
    )
    return state
