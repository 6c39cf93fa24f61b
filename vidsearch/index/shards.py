"""`ShardedClipIndex`: several clip indexes searched in parallel as one, top-k merged.

Each shard is any `ClipIndex` (an index directory on this machine today, a remote one tomorrow), so a
server can fan out over collections larger than one machine's memory. Clips are placed by a stable
hash of their video id: a video lives in exactly one shard. Changes are not atomic across shards.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from vidsearch.errors import ClipIndexError, DuplicateClipError, IndexMismatchError, VidsearchError
from vidsearch.index.base import (
    ClipIndex,
    ClipRecord,
    Hit,
    IndexStats,
    PageRequest,
    SearchFilter,
    SearchOptions,
    SearchPage,
    Tuning,
    check_top_k,
)
from vidsearch.index.faiss_index import FaissClipIndex
from vidsearch.index.faiss_state import OpenOptions
from vidsearch.index.paging import paginate, paginate_batch


def shard_of(video_id: str, shards: int) -> int:
    """The shard a video belongs to: stable across processes and Python versions (unlike hash())."""
    digest = hashlib.blake2b(video_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


class ShardedClipIndex:
    """A `ClipIndex` over shards; searches run on a thread pool (FAISS releases the GIL)."""

    def __init__(
        self, shards: Sequence[ClipIndex], *, token_key: bytes, max_workers: int | None = None
    ) -> None:
        if not shards:
            raise ClipIndexError("a sharded index needs at least one shard")
        first = shards[0]
        for shard in shards[1:]:
            if shard.dim != first.dim or shard.model != first.model:
                raise IndexMismatchError(
                    f"shards disagree: {first.model!r} {first.dim}-d and {shard.model!r} {shard.dim}-d"
                )
        self._shards = list(shards)
        self._key = token_key
        self._pool = ThreadPoolExecutor(max_workers=max_workers or len(shards), thread_name_prefix="shard")

    @classmethod
    def open(cls, directories: Sequence[Path], options: OpenOptions | None = None) -> ShardedClipIndex:
        """Open index directories as shards; page tokens stay valid across restarts (key from the shards)."""
        shards = [FaissClipIndex.open(directory, options) for directory in directories]
        key = hashlib.sha256(b"".join(shard.page_token_key for shard in shards)).digest()
        return cls(shards, token_key=key)

    @property
    def dim(self) -> int:
        return self._shards[0].dim

    @property
    def concurrent_searches(self) -> int:
        return min(shard.concurrent_searches for shard in self._shards)

    @property
    def model(self) -> str:
        return self._shards[0].model

    @property
    def version(self) -> str:
        return "/".join(shard.version for shard in self._shards)

    @property
    def shards(self) -> tuple[ClipIndex, ...]:
        return tuple(self._shards)

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    # -- changes ---------------------------------------------------------------------------------

    def _route(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> dict[int, list[int]]:
        if len(records) != vectors.shape[0]:
            raise ClipIndexError(f"{len(records)} records for {vectors.shape[0]} vectors")
        routes: dict[int, list[int]] = {}
        for row, record in enumerate(records):
            routes.setdefault(shard_of(record.video_id, len(self._shards)), []).append(row)
        return routes

    def ready(self) -> bool:
        return all(shard.ready() for shard in self._shards)

    def add(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        existing = self.get(record.clip_id for record in records)
        if existing:
            raise DuplicateClipError(f"clip ids already in the index: {sorted(existing)[:5]} (use upsert)")
        array = np.asarray(vectors)
        for shard, rows in self._route(records, array).items():
            self._shards[shard].add([records[i] for i in rows], array[rows])

    def upsert(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        array = np.asarray(vectors)
        routes = self._route(records, array)
        self.delete_clips(record.clip_id for record in records)
        for shard, rows in routes.items():
            self._shards[shard].add([records[i] for i in rows], array[rows])

    def delete_clips(self, clip_ids: Iterable[str]) -> int:
        wanted = list(clip_ids)
        return sum(self._pool.map(lambda shard: shard.delete_clips(wanted), self._shards))

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        wanted = list(video_ids)
        return sum(self._pool.map(lambda shard: shard.delete_videos(wanted), self._shards))

    def get(self, clip_ids: Iterable[str]) -> dict[str, ClipRecord]:
        wanted = list(clip_ids)
        found: dict[str, ClipRecord] = {}
        for part in self._pool.map(lambda shard: shard.get(wanted), self._shards):
            found.update(part)
        return found

    # -- search ----------------------------------------------------------------------------------

    def search_hits(
        self, queries: np.ndarray, k: int, search_filter: SearchFilter, tuning: Tuning
    ) -> list[list[Hit]]:
        """Each shard's top k, merged: the global top k (ties broken by clip id, for stable pages).

        The queries go to the shards as they are: each shard checks and normalises them at its entry.
        """
        check_top_k(k)
        first, *rest = self._shards
        others = [self._pool.submit(shard.search_hits, queries, k, search_filter, tuning) for shard in rest]
        # the first shard runs in the calling thread: one thread hand-over fewer per search
        parts = [first.search_hits(queries, k, search_filter, tuning)]
        parts += [future.result() for future in others]
        merged = []
        for row in range(len(parts[0])):
            candidates = (hit for part in parts for hit in part[row])
            merged.append(heapq.nsmallest(k, candidates, key=lambda hit: (-hit.score, hit.clip.clip_id)))
        return merged

    def search(
        self, queries: np.ndarray, options: SearchOptions, page_tokens: Sequence[str | None] | None = None
    ) -> list[SearchPage]:
        return paginate(self.search_hits, queries, self.dim, options, page_tokens, self._key)

    def search_batch(
        self, queries: np.ndarray, requests: Sequence[PageRequest]
    ) -> list[SearchPage | VidsearchError]:
        return paginate_batch(self.search_hits, queries, self.dim, requests, self._key)

    # -- housekeeping ----------------------------------------------------------------------------

    def stats(self) -> IndexStats:
        parts = [shard.stats() for shard in self._shards]
        first = parts[0]
        return replace(
            first,
            clips=sum(p.clips for p in parts),
            videos=sum(p.videos for p in parts),
            vectors=sum(p.vectors for p in parts),
            tombstones=sum(p.tombstones for p in parts),
            size_bytes=sum(p.size_bytes for p in parts),
            read_only=any(p.read_only for p in parts),
            backend=f"{len(parts)} shards of {first.backend}",
            index_type=",".join(sorted({p.index_type for p in parts})),
            device=",".join(sorted({p.device for p in parts})),
        )

    def flush(self) -> None:
        list(self._pool.map(lambda shard: shard.flush(), self._shards))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for shard in self._shards:
            shard.close()
