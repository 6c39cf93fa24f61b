"""The clip index: FAISS vectors plus SQLite metadata, persisted atomically, filtered, paged, sharded.

The server and the CLI use `ClipIndex` (backend-neutral, in `base`); `FaissClipIndex` is the one-machine
implementation and `ShardedClipIndex` fans a search out over several indexes.
"""

from vidsearch.index.base import (
    MAX_TOP_K,
    ClipIndex,
    ClipRecord,
    GpuPolicy,
    Hit,
    IndexStats,
    PageRequest,
    SearchFilter,
    SearchOptions,
    SearchPage,
    TimeRange,
    Tuning,
    VideoGroup,
)
from vidsearch.index.faiss_index import FaissClipIndex, IndexConfig
from vidsearch.index.faiss_state import OpenOptions
from vidsearch.index.filters import omp_threads
from vidsearch.index.shards import ShardedClipIndex

__all__ = [
    "MAX_TOP_K",
    "ClipIndex",
    "ClipRecord",
    "FaissClipIndex",
    "GpuPolicy",
    "Hit",
    "IndexConfig",
    "IndexStats",
    "OpenOptions",
    "PageRequest",
    "SearchFilter",
    "SearchOptions",
    "SearchPage",
    "ShardedClipIndex",
    "TimeRange",
    "Tuning",
    "VideoGroup",
    "omp_threads",
]
