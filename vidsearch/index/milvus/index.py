"""`MilvusClipIndex`: the `ClipIndex` of a Milvus collection, for collections that outgrow one machine.

One collection holds the clips of one embedding model and dimension: clip id (primary key), video id
(partition key, so a video's clips live together and "search this video" touches one partition),
uri, start, end, model, model version, tags, JSON attributes and the L2-normalised vector, indexed for
inner product. The collection's description records the model, its checksum and the key of the page
tokens, so every process that opens it agrees on all three. Filters become escaped Milvus expressions
(`expressions`); paging and grouping are the backend-neutral ones of `paging`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from vidsearch.errors import (
    ClipIndexError,
    DuplicateClipError,
    IndexMismatchError,
    InvalidClipError,
    VidsearchError,
)
from vidsearch.index.base import (
    ClipRecord,
    Hit,
    IndexStats,
    PageRequest,
    SearchFilter,
    SearchOptions,
    SearchPage,
    Tuning,
    check_top_k,
    normalise_rows,
)
from vidsearch.index.milvus import expressions as ex
from vidsearch.index.milvus import versions
from vidsearch.index.milvus.calls import pymilvus_module, translate
from vidsearch.index.milvus.config import MilvusIndexSpec, MilvusTarget
from vidsearch.index.milvus.schema import (
    FIELDS,
    VECTOR,
    Described,
    check_record,
    collection_schema,
    to_record,
    to_row,
)
from vidsearch.index.paging import paginate, paginate_batch

log = logging.getLogger(__name__)

_LOOKUP_BATCH = 1000
_FETCH_SEPARATELY_FROM = 64
"""From this many hits per call on, a search asks for ids and scores only and reads the clips in one
lookup by primary key: Milvus reads output fields per query and segment, a lookup reads each clip once
(64 queries × 10 hits: 42 → 29 ms per call measured; for 10 hits the second call costs more than
it saves, 3.7 → 6.0 ms)."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class MilvusCollectionConfig:
    """A new collection: what it embeds and how its vector index is built.

    `partitions`: how many partitions the video id (the partition key) hashes into. Every partition
    has segments of its own, each with its own vector index, and a search without a video filter
    searches them all: more partitions make "search these videos" cheaper and every other search
    dearer (Milvus's default of 64 made an unfiltered search 64 small graph searches).
    `replicas`: how many in-memory copies the query nodes load, each on nodes of its own; each serves
    a share of the searches (a cluster needs that many query nodes).
    """

    dim: int
    model: str
    model_checksum: str = ""
    index: MilvusIndexSpec = field(default_factory=MilvusIndexSpec)
    shards: int = 1
    partitions: int = 1
    replicas: int = 1


@dataclass(frozen=True)
class _VideoCount:
    """How many videos the collection held when it held `clips` clips."""

    clips: int
    videos: int


class MilvusClipIndex:
    """A clip index in a Milvus collection. Thread-safe (pymilvus clients are)."""

    def __init__(self, client: Any, target: MilvusTarget, described: Described) -> None:
        self._client = client
        self._target = target
        self._d = described
        self._closed = threading.Event()
        self._writes = 0
        self._writes_lock = threading.Lock()
        self._video_count: _VideoCount | None = None
        self._video_lock = threading.Lock()

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def connect(cls, target: MilvusTarget) -> Any:
        """A pymilvus client for the target; IndexUnavailableError when the server cannot be reached."""
        pymilvus = pymilvus_module()
        return translate(
            target,
            "connect",
            lambda: pymilvus.MilvusClient(
                uri=target.uri, token=target.token, db_name=target.db_name, timeout=target.timeout_s
            ),
        )

    @classmethod
    def create(cls, target: MilvusTarget, config: MilvusCollectionConfig) -> MilvusClipIndex:
        """A new, empty collection (ClipIndexError if one of that name exists), indexed and loaded."""
        client = cls.connect(target)
        if translate(target, "look up the collection", lambda: client.has_collection(target.collection)):
            client.close()
            raise ClipIndexError(f"{target.address} exists already: open it, or drop it first")
        described = Described(config.dim, config.model, config.model_checksum, secrets.token_bytes(32),
                               config.index.resolved())  # fmt: skip
        schema = collection_schema(client, config.dim, described.text())
        index_params = client.prepare_index_params()
        index_params.add_index(field_name=VECTOR, index_type=config.index.index_type, metric_type="IP",
                               params=config.index.build)  # fmt: skip

        def make() -> None:
            client.create_collection(
                target.collection,
                schema=schema,
                index_params=index_params,
                consistency_level=target.consistency,
                num_shards=config.shards,
                num_partitions=config.partitions,
            )  # with its index: pymilvus loads it, one replica
            if config.replicas > 1:  # Milvus refuses another replica number for a loaded collection
                client.release_collection(target.collection)
            client.load_collection(target.collection, replica_number=config.replicas)  # fmt: skip

        try:
            translate(target, "create the collection", make)
        except BaseException:
            client.close()
            raise
        log.info("created %s: %d-d %s, %s", target.address, config.dim, config.model, config.index.index_type)
        return cls(client, target, described)

    @classmethod
    def open(
        cls,
        target: MilvusTarget,
        *,
        expect_dim: int | None = None,
        expect_model: str | None = None,
        expect_model_checksum: str | None = None,
    ) -> MilvusClipIndex:
        """Open an existing collection, refusing one of another model or dimension (IndexMismatchError)."""
        client = cls.connect(target)
        try:
            info = translate(target, "describe the collection", lambda: _describe(client, target))
            described = Described.parse(info.get("description", ""), target.address)
            _check_expected(described, target, expect_dim, expect_model, expect_model_checksum)
            translate(target, "load the collection", lambda: _load_unless_loaded(client, target.collection))
        except BaseException:
            client.close()
            raise
        return cls(client, target, described)

    @classmethod
    def exists(cls, target: MilvusTarget) -> bool:
        """Whether the target's name is a collection (or an alias of one) on the server."""
        client = cls.connect(target)
        try:
            return bool(translate(
                target, "look up the collection", lambda: client.has_collection(target.collection)))
        finally:
            client.close()

    @classmethod
    def open_or_create(cls, target: MilvusTarget, config: MilvusCollectionConfig) -> MilvusClipIndex:
        """Open the collection if it exists (it must hold `config`'s model and dimension), else create it."""
        if cls.exists(target):
            return cls.open(target, expect_dim=config.dim, expect_model=config.model,
                            expect_model_checksum=config.model_checksum or None)  # fmt: skip
        return cls.create(target, config)

    @classmethod
    def remove(cls, target: MilvusTarget) -> bool:
        """Drop the collection (and the alias, if the name is one) whatever it holds; returns whether
        there was one."""
        client = cls.connect(target)
        try:
            name = target.collection
            return translate(target, "drop the collection", lambda: versions.drop_name(client, name))
        finally:
            client.close()

    # -- properties ------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._d.dim

    @property
    def model(self) -> str:
        return self._d.model

    @property
    def index_spec(self) -> MilvusIndexSpec:
        """The vector index the collection was built with, every parameter written out."""
        return self._d.index

    @property
    def concurrent_searches(self) -> int:
        return self._target.concurrent_searches

    @property
    def version(self) -> str:
        """The collection's name, with `+N` for the N changes this process made to it (Milvus keeps
        every acknowledged write durable itself: there are no snapshots to name)."""
        with self._writes_lock:
            return (
                self._target.collection if not self._writes else f"{self._target.collection}+{self._writes}"
            )

    def _wrote(self) -> None:
        with self._writes_lock:
            self._writes += 1

    @property
    def target(self) -> MilvusTarget:
        return self._target

    @property
    def page_token_key(self) -> bytes:
        return self._d.page_token_key

    def ready(self) -> bool:
        return True  # Milvus checks its own data; an unreachable server is IndexUnavailableError per call

    def __len__(self) -> int:
        rows = self._call("count clips", lambda: self._client.query(
            self._target.collection, filter="", output_fields=["count(*)"],
            consistency_level=self._target.consistency))  # fmt: skip
        return int(rows[0]["count(*)"])

    # -- changes ---------------------------------------------------------------------------------

    def add(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        rows = self._rows(records, vectors)
        if not rows:
            return
        with self._video_lock:
            present = self._owners([r["clip_id"] for r in rows])
            if present:
                raise DuplicateClipError(f"clip ids already in the index: {sorted(present)[:5]} (use upsert)")
            touched = {r["video_id"] for r in rows}
            self._counting_videos(touched, lambda: self._insert("insert", rows))

    def upsert(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> None:
        rows = self._rows(records, vectors)
        if not rows:
            return
        with self._video_lock:
            # a replaced clip may have belonged to another video, which may now have none left
            touched = {r["video_id"] for r in rows}
            if self._video_count is not None:
                touched |= set(self._owners([r["clip_id"] for r in rows]).values())
            self._counting_videos(touched, lambda: self._insert("upsert", rows))

    def _insert(self, how: str, rows: list[dict[str, Any]]) -> None:
        write = self._client.insert if how == "insert" else self._client.upsert
        self._call(f"{how} clips", lambda: write(self._target.collection, rows))
        self._wrote()

    def delete_clips(self, clip_ids: Iterable[str]) -> int:
        with self._video_lock:
            present = self._owners(list(clip_ids))

            def delete() -> None:
                for batch in _batches(sorted(present)):
                    remove = partial(self._client.delete, self._target.collection, ids=list(batch))
                    self._call("delete clips", remove)
                if present:
                    self._settle()

            self._counting_videos(set(present.values()), delete)
            return len(present)

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        videos = sorted(set(video_ids))
        removed = 0

        def delete() -> None:
            nonlocal removed
            for batch in _batches(videos):
                expression = ex.video_ids_expression(batch)
                removed += self._count(expression)
                self._call(
                    "delete videos", partial(self._client.delete, self._target.collection, filter=expression)
                )
            if removed:
                self._settle()

        with self._video_lock:
            self._counting_videos(set(videos), delete)
        return removed

    def _counting_videos(self, touched: set[str], write: Callable[[], None]) -> None:
        """Run a write of this process, keeping the cached video count true: it can only change for
        the videos the write touches, so those are counted before and after (two small lookups instead
        of a scan of the video id column). Holds `_video_lock`, so writes do not interleave meanwhile.
        Without a cached count (nothing asked for one yet) the write runs alone."""
        cached = self._video_count
        if cached is None:
            write()
            return
        if len(self) != cached.clips:  # another process wrote since: count afresh when asked
            self._video_count = None
            write()
            return
        before = self._present_videos(touched)
        try:
            write()
        except BaseException:
            self._video_count = None
            raise
        after = self._present_videos(touched)
        self._video_count = _VideoCount(clips=len(self), videos=cached.videos - len(before) + len(after))

    def _settle(self) -> None:
        self._wrote()
        self._wait_for_deletes()

    def _wait_for_deletes(self) -> None:
        """Make a delete visible to this process's next reads.

        Milvus 2.3 answers a delete without the timestamp that "Session" reads wait for (inserts and
        upserts have one), so one "Strong" read waits until the query nodes have applied it; reads run
        at their node's latest applied time, so every later read sees the delete too.
        """
        self._call(
            "wait for the delete",
            lambda: self._client.query(
                self._target.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
            ),
        )

    def _rows(self, records: Sequence[ClipRecord], vectors: np.ndarray) -> list[dict[str, Any]]:
        """Validated rows for insert/upsert: one per record, vectors normalised."""
        vecs = normalise_rows(vectors, self.dim, what="clip")
        batch = list(records)
        if len(batch) != vecs.shape[0]:
            raise InvalidClipError(f"{len(batch)} records for {vecs.shape[0]} vectors")
        seen: set[str] = set()
        for record in batch:
            check_record(record, self.model)
            if record.clip_id in seen:
                raise InvalidClipError(f"clip id {record.clip_id!r} appears twice in one batch")
            seen.add(record.clip_id)
        return [to_row(record, vector) for record, vector in zip(batch, vecs, strict=True)]

    def _owners(self, clip_ids: list[str]) -> dict[str, str]:
        """The video id of each of these clip ids that exists."""
        found: dict[str, str] = {}
        for batch in _batches(sorted(set(clip_ids))):
            for row in self._query(ex.clip_ids_expression(batch), [ex.CLIP_ID, ex.VIDEO_ID]):
                found[row[ex.CLIP_ID]] = row[ex.VIDEO_ID]
        return found

    def _present_videos(self, video_ids: set[str]) -> set[str]:
        """Those of these videos that have at least one clip here."""
        found: set[str] = set()
        for batch in _batches(sorted(video_ids)):
            rows = self._query(ex.video_ids_expression(batch), [ex.VIDEO_ID])
            found.update(row[ex.VIDEO_ID] for row in rows)
        return found

    def _count(self, expression: str) -> int:
        rows = self._call("count clips", lambda: self._client.query(
            self._target.collection, filter=expression, output_fields=["count(*)"],
            consistency_level=self._target.consistency))  # fmt: skip
        return int(rows[0]["count(*)"])

    def _query(self, expression: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        return list(self._call("query clips", lambda: self._client.query(
            self._target.collection, filter=expression, output_fields=list(fields),
            consistency_level=self._target.consistency)))  # fmt: skip

    # -- search ----------------------------------------------------------------------------------

    def search_hits(
        self, queries: np.ndarray, k: int, search_filter: SearchFilter, tuning: Tuning
    ) -> list[list[Hit]]:
        check_top_k(k)
        vectors = normalise_rows(queries, self.dim, what="query")
        if vectors.shape[0] == 0 or ex.matches_nothing(search_filter):
            return [[] for _ in range(vectors.shape[0])]
        expression = ex.filter_expression(search_filter) or ""
        params = {"metric_type": "IP", "params": self._search_params(k, tuning)}
        inline = vectors.shape[0] * k < _FETCH_SEPARATELY_FROM
        # raw little-endian float32 rows: pymilvus sends bytes as they are (typed by the collection's
        # cached schema) where it would pack a numpy row float by float (64 × 512: 1.05 ms → 9 µs)
        rows = [row.tobytes() for row in vectors.astype("<f4", copy=False)]
        results = self._call("search", lambda: self._client.search(
            self._target.collection, data=rows, filter=expression, limit=k,
            output_fields=list(FIELDS) if inline else [], search_params=params, anns_field=VECTOR,
            consistency_level=self._target.consistency))  # fmt: skip
        if inline:
            return [[Hit(to_record(hit["entity"]), float(hit["distance"])) for hit in row] for row in results]
        # each row's `ids` and `distances` lists, read as they are: iterating a row materialises a
        # pymilvus Hit per clip (640 at batch 64)
        found = self.get({clip_id for row in results for clip_id in row.ids})
        # a clip deleted between the search and the lookup is left out, as a later search would
        return [
            [Hit(found[clip_id], float(score)) for clip_id, score in zip(row.ids, row.distances, strict=True)
             if clip_id in found]
            for row in results
        ]

    def _search_params(self, k: int, tuning: Tuning) -> dict[str, int | str]:
        """The recorded search parameters, the query's tuning, and the floors Milvus puts on them."""
        params = dict(self._d.index.search)
        kind = self._d.index.index_type
        if tuning.nprobe is not None and kind.startswith("IVF"):
            params["nprobe"] = tuning.nprobe
        if kind == "HNSW":
            params["ef"] = max(int(tuning.ef_search or params.get("ef", k)), k)
        elif kind == "DISKANN":
            params["search_list"] = max(int(params.get("search_list", k)), k)
        elif kind == "GPU_CAGRA":
            params["itopk_size"] = max(int(params.get("itopk_size", k)), k)
        return params

    def search(
        self, queries: np.ndarray, options: SearchOptions, page_tokens: Sequence[str | None] | None = None
    ) -> list[SearchPage]:
        return paginate(self.search_hits, queries, self.dim, options, page_tokens, self._d.page_token_key)

    def search_batch(
        self, queries: np.ndarray, requests: Sequence[PageRequest]
    ) -> list[SearchPage | VidsearchError]:
        return paginate_batch(self.search_hits, queries, self.dim, requests, self._d.page_token_key)

    def get(self, clip_ids: Iterable[str]) -> dict[str, ClipRecord]:
        out: dict[str, ClipRecord] = {}
        for batch in _batches(sorted(set(clip_ids))):
            for row in self._query(ex.clip_ids_expression(batch), FIELDS):
                record = to_record(row)
                out[record.clip_id] = record
        return out

    # -- housekeeping ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Seal what was written so far into persisted segments (Milvus logs every write already)."""
        self._call("flush", lambda: self._client.flush(self._target.collection))

    def wait_indexed(self, timeout_s: float = 3600.0, poll_s: float = 0.5) -> None:
        """Block until every sealed (flushed) row is in the vector index (after a bulk load)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self._call("ask the index state", lambda: self._client.describe_index(
                self._target.collection, VECTOR))  # fmt: skip
            if int(state.get("pending_index_rows", 0)) == 0 and int(state.get("indexed_rows", 0)) >= int(
                state.get("total_rows", 0)
            ):
                return
            if time.monotonic() > deadline:
                raise ClipIndexError(
                    f"{self._target.address}: the vector index is not built after {timeout_s} s"
                )
            time.sleep(poll_s)

    def finish_bulk_load(self) -> None:
        """After a bulk load: seal every row, wait for the vector index, and load the indexed segments.

        Until the query nodes load a sealed segment with its index they search its rows brute force;
        reloading the collection makes the first searches use the index. Searches fail meanwhile, so
        this is for a build that nothing serves from yet.
        """
        self.flush()
        self.wait_indexed()
        replicas = self.replicas()
        self._call("release the collection", lambda: self._client.release_collection(self._target.collection))
        self._call("load the collection", lambda: self._client.load_collection(
            self._target.collection, replica_number=replicas))  # fmt: skip

    def replicas(self) -> int:
        """How many in-memory copies of the collection the query nodes hold."""
        name = self._target.collection
        return len(self._call("list the replicas", lambda: self._client.describe_replica(name)))

    def loaded_segments(self) -> list[int]:
        """Rows of each segment the query nodes hold: a search visits every one (each with its own
        vector index) and merges their results, so this says how many index searches one query costs."""
        segments = self._call("list the loaded segments", lambda: self._client.list_loaded_segments(
            self._target.collection))  # fmt: skip
        return sorted((int(segment.num_rows) for segment in segments), reverse=True)

    def videos(self) -> int:
        """How many videos have clips here.

        Milvus cannot count distinct values, so the first call scans the video id column; the count is
        then kept, and this process's own writes keep it true (`_counting_videos`). Another process's
        writes change the clip count, which makes the next call scan again.
        """
        with self._video_lock:
            clips = len(self)
            cached = self._video_count
            if cached is None or cached.clips != clips:
                cached = self._video_count = _VideoCount(clips=clips, videos=self._scan_videos())
            return cached.videos

    def _scan_videos(self) -> int:
        seen: set[str] = set()
        iterator = self._call("scan video ids", lambda: self._client.query_iterator(
            self._target.collection, batch_size=16_384, filter="", output_fields=[ex.VIDEO_ID]))  # fmt: skip
        try:
            while rows := self._call("scan video ids", iterator.next):
                seen.update(row[ex.VIDEO_ID] for row in rows)
        finally:
            iterator.close()
        return len(seen)

    def stats(self) -> IndexStats:
        version = self._call("ask the server version", self._client.get_server_version)
        name = self._target.collection
        current = self._call("describe the collection", lambda: versions.resolve(self._client, name))
        where = self._target.address if current in (None, name) else f"{self._target.address} (= {current})"
        clips = len(self)
        return IndexStats(
            clips=clips,
            videos=self.videos(),
            dim=self.dim,
            model=self.model,
            model_checksum=self._d.model_checksum,
            backend=f"milvus {version} at {where}",
            index_type=self._d.index.index_type,
            vectors=clips,
            tombstones=0,
            size_bytes=0,
            read_only=False,
            device="gpu" if self._d.index.index_type.startswith("GPU") else "cpu",
            params={**self._d.index.build, **self._d.index.search, "consistency": self._target.consistency,
                    "replicas": self.replicas()},
        )

    def drop(self) -> None:
        """Delete the collection and everything in it (and the alias, if the name is one)."""
        self._call("drop the collection", lambda: versions.drop_name(self._client, self._target.collection))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._client.close()

    def __enter__(self) -> MilvusClipIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """A pymilvus call with vidsearch's errors; a collection that a restarted Milvus has not
        loaded again is loaded, and the call retried once."""
        pymilvus = pymilvus_module()
        try:
            return call()
        except pymilvus.exceptions.MilvusException as exc:
            if "not loaded" not in str(exc.message):
                return translate(self._target, what, call, first=exc)
        log.warning("%s is not loaded (Milvus restarted?): loading it", self._target.address)
        translate(
            self._target, "load the collection", lambda: self._client.load_collection(self._target.collection)
        )
        return translate(self._target, what, call)


def _load_unless_loaded(client: Any, collection: str) -> None:
    """Load the collection unless it is (a collection loaded with N replicas keeps them)."""
    state = client.get_load_state(collection).get("state")
    if getattr(state, "name", str(state)) != "Loaded":
        client.load_collection(collection)


def _describe(client: Any, target: MilvusTarget) -> dict[str, Any]:
    if not client.has_collection(target.collection):
        raise IndexMismatchError(f"{target.address} holds no collection of that name (build one first)")
    return dict(client.describe_collection(target.collection))


def _check_expected(
    described: Described,
    target: MilvusTarget,
    dim: int | None,
    model: str | None,
    checksum: str | None,
) -> None:
    if dim is not None and described.dim != dim:
        raise IndexMismatchError(f"{target.address} holds {described.dim}-d vectors, expected {dim}-d")
    if model is not None and described.model != model:
        raise IndexMismatchError(f"{target.address} holds {described.model!r} embeddings, expected {model!r}")
    if checksum and described.model_checksum and described.model_checksum != checksum:
        raise IndexMismatchError(
            f"{target.address} was built with weights {described.model_checksum}, expected {checksum}"
        )


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _LOOKUP_BATCH):
        yield values[start : start + _LOOKUP_BATCH]
