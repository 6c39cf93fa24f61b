"""The backend-neutral clip index: records, filters, results and the `ClipIndex` protocol.

Nothing here names FAISS: the server and the CLI talk to this interface only, so that another
backend (a Milvus cluster, for collections that outgrow one machine) can implement it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from vidsearch.errors import (
    ConfigError,
    IndexMismatchError,
    InvalidClipError,
    InvalidQueryError,
    VidsearchError,
)

MAX_TOP_K = 10_000
"""Largest number of results one search may ask for (deeper result lists are not a search use case)."""

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class GpuPolicy(StrEnum):
    """Where an index runs: on GPUs when the backend sees any (`auto`), never, or GPUs required."""

    AUTO = "auto"
    NEVER = "never"
    REQUIRE = "require"

    @classmethod
    def for_device(cls, device: str) -> GpuPolicy:
        """The policy of the server's `[index] device` setting: cpu, gpu (required) or auto."""
        try:
            return {"cpu": cls.NEVER, "gpu": cls.REQUIRE, "auto": cls.AUTO}[device]
        except KeyError:
            raise ConfigError(f"index device {device!r}: use cpu, gpu or auto") from None


def clip_id(video_id: str, number: int) -> str:
    """The id of clip `number` of a video, the same whether the Ingest RPC or a batch job made it."""
    return f"{video_id}#{number:05d}"


@dataclass(frozen=True)
class ClipRecord:
    """One indexed clip: where it comes from and which model embedded it.

    A clip spans the half-open interval [start_s, end_s) of its video.
    """

    clip_id: str
    video_id: str
    uri: str
    start_s: float
    end_s: float
    model: str
    model_version: str = ""
    tags: frozenset[str] = frozenset()
    attributes: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.clip_id or not self.video_id:
            raise InvalidClipError(f"clip {self.clip_id!r}: clip_id and video_id must be non-empty")
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)) or not (
            0.0 <= self.start_s <= self.end_s
        ):
            raise InvalidClipError(
                f"clip {self.clip_id!r}: need 0 <= start_s <= end_s, got [{self.start_s}, {self.end_s})"
            )
        if not self.model:
            raise InvalidClipError(f"clip {self.clip_id!r}: the embedding model name is empty")

    @classmethod
    def trusted(cls, **fields: Any) -> ClipRecord:
        """A record from fields that were validated when stored: no checks, one dict update instead of
        a frozen dataclass's per-field `__setattr__` (a search builds one record per hit)."""
        record = object.__new__(cls)
        record.__dict__.update(fields)
        return record


@dataclass(frozen=True)
class TimeRange:
    """Keeps clips that overlap [start_s, end_s] of their video (a point query has start_s == end_s)."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)) or self.start_s > self.end_s:
            raise InvalidQueryError(f"time range [{self.start_s}, {self.end_s}] is empty or not finite")


@dataclass(frozen=True)
class SearchFilter:
    """Which clips a search may return; every given condition must hold.

    `video_ids`: the clip belongs to one of these videos. `tags`: the clip carries at least one of
    these tags. `time_range`: the clip overlaps the range. An empty set matches nothing.
    """

    video_ids: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    time_range: TimeRange | None = None

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every clip through."""
        return self.video_ids is None and self.tags is None and self.time_range is None

    def canonical(self) -> str:
        """A stable text form, used to bind page tokens to the filter they were issued for."""
        videos = sorted(self.video_ids) if self.video_ids is not None else None
        tags = sorted(self.tags) if self.tags is not None else None
        span = (self.time_range.start_s, self.time_range.end_s) if self.time_range else None
        return repr((videos, tags, span))


@dataclass(frozen=True)
class Tuning:
    """Per-query accuracy/speed knobs; a backend ignores the ones its index type does not have.

    `nprobe`: inverted lists visited (IVF). `ef_search`: candidate list length (HNSW).
    None keeps the value recorded when the index was built.
    """

    nprobe: int | None = None
    ef_search: int | None = None

    def __post_init__(self) -> None:
        for name in ("nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidQueryError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class SearchOptions:
    """What one search returns: how many results, filtered how, grouped and paged how.

    `top_k` bounds the whole result list, across pages; `page_size` (default: top_k) is the number of
    hits per page, or of videos per page when `group_by_video` is set.
    """

    top_k: int = 10
    page_size: int | None = None
    group_by_video: bool = False
    filter: SearchFilter = field(default_factory=SearchFilter)
    tuning: Tuning = field(default_factory=Tuning)

    def __post_init__(self) -> None:
        check_top_k(self.top_k)
        if self.page_size is not None and not 1 <= self.page_size <= self.top_k:
            raise InvalidQueryError(f"page_size must be in [1, top_k={self.top_k}], got {self.page_size}")

    @property
    def effective_page_size(self) -> int:
        return self.page_size if self.page_size is not None else self.top_k


@dataclass(frozen=True)
class Hit:
    """One search result: a clip and its cosine similarity to the query."""

    clip: ClipRecord
    score: float


@dataclass(frozen=True)
class VideoGroup:
    """The hits of one video, best first."""

    video_id: str
    hits: tuple[Hit, ...]

    @property
    def best(self) -> Hit:
        return self.hits[0]


@dataclass(frozen=True)
class SearchPage:
    """One page of results for one query; `groups` is filled instead of `hits` when grouping."""

    hits: tuple[Hit, ...] = ()
    groups: tuple[VideoGroup, ...] = ()
    next_page_token: str | None = None


@dataclass(frozen=True)
class PageRequest:
    """One query of a batch search: its own options, and the page token it continues (None: page 1)."""

    options: SearchOptions
    page_token: str | None = None


@dataclass(frozen=True)
class IndexStats:
    """What an index holds and how it is built, for `vidsearch index stats` and health pages."""

    clips: int
    videos: int
    dim: int
    model: str
    model_checksum: str
    backend: str
    index_type: str
    vectors: int
    tombstones: int
    size_bytes: int
    read_only: bool
    device: str
    params: Mapping[str, str | int | float] = field(default_factory=dict)


def check_top_k(top_k: int) -> None:
    """Reject result counts outside [1, MAX_TOP_K] with a message that says the limit."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidQueryError(f"top_k must be in [1, {MAX_TOP_K}], got {top_k}")


def check_batch(records: Sequence[ClipRecord], rows: int, model: str) -> None:
    """Refuse a batch whose records and vectors differ in number, repeat a clip id, or name another model."""
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


def normalise_rows(vectors: np.ndarray, dim: int, *, what: str) -> np.ndarray:
    """Validate a (n, dim) batch and return an L2-normalised float32 copy (cosine via inner product).

    Raises InvalidQueryError for queries and InvalidClipError for clip vectors (`what` says which).
    One pass for the norms, whose finiteness stands for the rows' (NaN and infinity make it non-finite):
    a search calls this once per query batch.
    """
    error = InvalidQueryError if what == "query" else InvalidClipError
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise error(f"{what} vectors must have shape (n, {dim}), got {array.shape}")
    if array.dtype.kind != "f":
        raise error(f"{what} vectors must be floating point, got {array.dtype}")
    out = np.array(array, dtype=np.float32, order="C", copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    if not np.isfinite(norms).all():
        if np.isfinite(out).all():
            raise error(f"{what} vectors have values too large for float32 arithmetic")
        raise error(f"{what} vectors contain NaN or infinity")
    if out.shape[0] and float(norms.min()) == 0.0:
        raise error(f"{what} vectors contain an all-zero row, which has no direction")
    out /= norms[:, None]
    return out


class ClipIndex(Protocol):
    """A searchable, updatable set of clip embeddings with their metadata.

    Vectors are compared by cosine similarity; implementations normalise what they receive.
    Every method is safe to call from several threads.
    """

    @property
    def dim(self) -> int: ...

    @property
    def model(self) -> str: ...

    @property
    def concurrent_searches(self) -> int:
        """How many `search_batch` calls the serving batcher keeps in flight, at least 1: 1 for an index
        in this process (its search already uses the cores), more for a server elsewhere, where a call
        mostly waits for the network and the server's own work."""

    @property
    def version(self) -> str:
        """Which state the index is in, reported with every search: changes with each write."""

    def __len__(self) -> int: ...

    def ready(self) -> bool:
        """Whether the index may be served now (False while its files are still being checked)."""

    def add(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        """Add new clips; a clip id already present raises DuplicateClipError."""

    def upsert(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        """Add clips, replacing any clip with the same id."""

    def delete_clips(self, clip_ids: Iterable[str]) -> int:
        """Remove clips by id; returns how many existed."""

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        """Remove every clip of these videos; returns how many clips were removed."""

    def get(self, clip_ids: Iterable[str]) -> dict[str, ClipRecord]:
        """The records of those clip ids that exist."""

    def search_hits(
        self, queries: np.ndarray, k: int, search_filter: SearchFilter, tuning: Tuning
    ) -> list[list[Hit]]:
        """The best k hits per query, best first: the primitive that paging and sharding build on."""

    def search(
        self, queries: np.ndarray, options: SearchOptions, page_tokens: Sequence[str | None] | None = None
    ) -> list[SearchPage]:
        """One page of results per query row; `page_tokens[i]` continues query i's previous page."""

    def search_batch(
        self, queries: np.ndarray, requests: Sequence[PageRequest]
    ) -> list[SearchPage | VidsearchError]:
        """One page per query row, each query with its own options: what the serving batcher calls.

        Rows that share a filter and tuning are searched together (one backend search, one metadata
        lookup). A query's own bad input (its page token) takes its place in the list instead of a
        page; anything wrong with the whole batch (the vectors' shape) raises.
        """

    def stats(self) -> IndexStats: ...

    def flush(self) -> None:
        """Make every change so far durable."""

    def close(self) -> None: ...
