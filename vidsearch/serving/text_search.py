"""Text searches from concurrent requests, run together end to end: one text-tower run and one index
search for the whole batch.

Batching only the text tower left every request thread to search the index on its own, and on a small
machine the wake-ups and GIL hand-overs between 32 request threads cost more than the searches. Here a
request thread hands its query over and sleeps until its page is ready: the batch is embedded in one
model run (`Runtime.embed_text_batch`: the runtime's text cache applies, its batcher does not, since
this is the Search path's one batching layer) and searched with one `ClipIndex.search_batch` call: one
FAISS search and one metadata lookup per distinct filter and tuning, whatever each query's page, page
size or top-k. Alone, a request runs in its own thread at once, as before (see
`DynamicBatcher`). What it gained is in docs/benchmarks.md (Search service).

A batch's FAISS search runs on one OpenMP thread: the server's parallelism is its requests, and OpenMP
workers spinning after each small search took a core from them.

An index on a server elsewhere (Milvus) keeps several batches in flight (`ClipIndex.concurrent_searches`):
requests go round the batchers in turn, each batching what arrives while its own search runs.
"""

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import DeadlineExceededError
from vidsearch.index import ClipIndex, PageRequest, SearchOptions, SearchPage, omp_threads
from vidsearch.runtime.base import Runtime
from vidsearch.runtime.batching import DynamicBatcher


@dataclass(frozen=True)
class TextQuery:
    text: str
    options: SearchOptions
    page_token: str | None
    arrived: float  # perf_counter() when its request started


@dataclass(frozen=True)
class TextAnswer:
    page: SearchPage
    embed_ms: float  # from its request's start until its query was embedded (waiting included)
    search_ms: float  # the index search of its batch


@dataclass(frozen=True)
class _Outcome:
    result: SearchPage | Exception
    embed_ms: float
    search_ms: float


class TextSearcher:
    """Thread-safe; `close` finishes the searches under way."""

    def __init__(self, runtime: Runtime, index: ClipIndex, max_batch: int) -> None:
        self._runtime = runtime
        self._index = index
        self._batchers: list[DynamicBatcher[TextQuery, _Outcome]] = [
            DynamicBatcher(self._run, max_batch, name=f"search-batcher-{number}")
            for number in range(index.concurrent_searches)]
        self._turns = itertools.count()  # next() is atomic: requests take the batchers in turn

    def search(self, query: TextQuery, timeout_s: float | None) -> TextAnswer:
        """The page for one query; its own error (a malformed page token, say) if it has one."""
        try:
            batcher = self._batchers[next(self._turns) % len(self._batchers)]
            outcome = batcher.map([query], timeout_s)[0]
        except TimeoutError:
            raise DeadlineExceededError("the search ran past the deadline") from None
        if isinstance(outcome.result, Exception):
            raise outcome.result
        return TextAnswer(outcome.result, outcome.embed_ms, outcome.search_ms)

    def close(self) -> None:
        for batcher in self._batchers:
            batcher.close()

    def _run(self, queries: Sequence[TextQuery]) -> list[_Outcome]:
        vectors = self._runtime.embed_text_batch([q.text for q in queries])
        embedded = time.perf_counter()
        requests = [PageRequest(q.options, q.page_token) for q in queries]
        with omp_threads(1):
            results = self._search(vectors, requests)
        search_ms = (time.perf_counter() - embedded) * 1000.0
        return [_Outcome(result, (embedded - query.arrived) * 1000.0, search_ms)
                for result, query in zip(results, queries, strict=True)]

    def _search(self, vectors: NDArray[np.float32], requests: Sequence[PageRequest]
                ) -> list[SearchPage | Exception]:
        """The pages of the batch from one index search; if the whole search fails, each query is
        searched alone, so that one request's bad input fails that request only."""
        try:
            return list(self._index.search_batch(vectors, requests))
        except Exception as err:
            if len(requests) == 1:
                return [err]
        return [self._search(vectors[i : i + 1], requests[i : i + 1])[0] for i in range(len(requests))]
