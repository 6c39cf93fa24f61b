"""TextSearcher: concurrent text searches run as one batch (one model run, one index search) over the
session's real exported text tower and a real FAISS index, and a bad query fails only its own request."""

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.typing import NDArray

from vidsearch.errors import DeadlineExceededError, InvalidPageTokenError, VidsearchError
from vidsearch.index import ClipRecord, FaissClipIndex, IndexConfig, PageRequest, SearchOptions, SearchPage
from vidsearch.runtime import RuntimeConfig, open_runtime
from vidsearch.runtime.model_runtime import ModelRuntime
from vidsearch.serving.text_search import TextQuery, TextSearcher

from ..runtime.models import Repository

CLIPS = 40
TEXTS = [f"a {colour} {shape}" for colour in ("red", "blue", "green", "grey") for shape in ("dot", "square")]
OPTIONS = SearchOptions(top_k=5, page_size=2)


class GatedRuntime:
    """The real runtime, whose first text batch waits for `gate`: the queries that arrive meanwhile
    queue up and then run together. Records the size of every text batch."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.runtime, name)

    def embed_text_batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.batches.append(len(texts))
        self.entered.set()
        assert self.gate.wait(30)
        return self.runtime.embed_text_batch(texts)


class CountingIndex:
    """The real index, recording how many queries each `search_batch` call carried."""

    def __init__(self, index: FaissClipIndex) -> None:
        self.index = index
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.index, name)

    def search_batch(self, queries: NDArray[np.float32], requests: Sequence[PageRequest]
                     ) -> list[SearchPage | VidsearchError]:
        self.batches.append(len(requests))
        return self.index.search_batch(queries, requests)


class GatedIndex(CountingIndex):
    """A `CountingIndex` as if on a server: `concurrent` searches in flight, each waiting for `gate`."""

    def __init__(self, index: FaissClipIndex, concurrent: int) -> None:
        super().__init__(index)
        self.concurrent_searches = concurrent
        self.gate = threading.Event()
        self.both_in = threading.Event()
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def search_batch(self, queries: NDArray[np.float32], requests: Sequence[PageRequest]
                     ) -> list[SearchPage | VidsearchError]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight == 2:
                self.both_in.set()
        try:
            assert self.gate.wait(30)
            return super().search_batch(queries, requests)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def runtime(repository: Repository) -> Iterator[ModelRuntime]:
    opened = open_runtime(RuntimeConfig(model_repository=repository.path, threads=1))
    yield opened
    opened.close()


@pytest.fixture
def index(runtime: ModelRuntime) -> Iterator[FaissClipIndex]:
    models = runtime.facts
    index = FaissClipIndex.create(IndexConfig(models.dim, models.model_name, models.model_checksum, "Flat"))
    vectors = np.random.default_rng(0).standard_normal((CLIPS, models.dim)).astype(np.float32)
    index.add([ClipRecord(f"c{i}", f"v{i // 4}", f"file:///v{i // 4}.mp4", i % 4 * 2.0, i % 4 * 2.0 + 2.0,
                          models.model_name) for i in range(CLIPS)], vectors)
    yield index
    index.close()


def query(text: str, top_k: int = 5, token: str | None = None) -> TextQuery:
    options = OPTIONS if top_k == OPTIONS.top_k else SearchOptions(top_k=top_k, page_size=2)
    return TextQuery(text, options, token, time.perf_counter())


def test_concurrent_searches_share_one_batch_and_match_searching_alone(runtime: ModelRuntime,
                                                                       index: FaissClipIndex) -> None:
    gated, counted = GatedRuntime(runtime), CountingIndex(index)
    searcher = TextSearcher(gated, counted, max_batch=64)  # type: ignore[arg-type]
    alone = {text: index.search(runtime.embed_text([text]), OPTIONS)[0] for text in TEXTS}
    queries = [query(text) for text in TEXTS] + [query(TEXTS[0], top_k=3)]  # two sets of options
    with ThreadPoolExecutor(len(queries)) as pool:
        first = pool.submit(searcher.search, queries[0], 30)
        assert gated.entered.wait(10)  # the first query runs alone and holds the model …
        rest = [pool.submit(searcher.search, q, 30) for q in queries[1:]]
        time.sleep(0.3)  # … while the others queue
        gated.gate.set()
        answers = [first.result(30)] + [f.result(30) for f in rest]
    searcher.close()
    assert gated.batches == [1, len(queries) - 1], "the queued queries ran as one batch"
    assert counted.batches == [1, len(queries) - 1], "one index search per batch, options mixed"
    for q, answer in zip(queries[:-1], answers, strict=False):
        assert [h.clip.clip_id for h in answer.page.hits] == [h.clip.clip_id for h in alone[q.text].hits]
        assert answer.page.next_page_token is not None
        assert answer.embed_ms > 0
        assert answer.search_ms > 0
    assert answers[-1].page.hits == answers[0].page.hits, "top 3 and top 5 share their first page"


def test_a_bad_page_token_fails_only_its_own_request(runtime: ModelRuntime, index: FaissClipIndex) -> None:
    searcher = TextSearcher(runtime, index, max_batch=64)
    token = searcher.search(query(TEXTS[1]), 30).page.next_page_token
    searcher.close()
    gated, counted = GatedRuntime(runtime), CountingIndex(index)
    searcher = TextSearcher(gated, counted, max_batch=64)  # type: ignore[arg-type]
    good = [query(TEXTS[1], token=token), query(TEXTS[2]), query(TEXTS[3])]
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(searcher.search, query(TEXTS[0]), 30)
        assert gated.entered.wait(10)
        bad = pool.submit(searcher.search, query(TEXTS[4], token="not-a-token"), 30)
        forged = pool.submit(searcher.search, query(TEXTS[5], token=token), 30)  # another query's token
        fine = [pool.submit(searcher.search, q, 30) for q in good]
        time.sleep(0.3)
        gated.gate.set()
        assert first.result(30).page.hits
        with pytest.raises(InvalidPageTokenError, match=r"base64url|bytes"):
            bad.result(30)
        with pytest.raises(InvalidPageTokenError):
            forged.result(30)
        pages = [f.result(30).page for f in fine]
    searcher.close()
    assert gated.batches == [1, 5]
    assert counted.batches == [1, 5], "bad tokens fail their own queries inside the one batch search"
    second = index.search(runtime.embed_text([TEXTS[1]]), OPTIONS, [token])[0]
    assert pages[0].hits == second.hits, "the valid token still gives its query's second page"
    assert all(len(page.hits) == 2 for page in pages)


def test_a_query_that_waits_past_its_deadline_is_refused(runtime: ModelRuntime,
                                                         index: FaissClipIndex) -> None:
    gated = GatedRuntime(runtime)
    searcher = TextSearcher(gated, index, max_batch=64)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(searcher.search, query(TEXTS[0]), 30)
        assert gated.entered.wait(10)
        with pytest.raises(DeadlineExceededError):
            searcher.search(query(TEXTS[1]), 0.2)
        gated.gate.set()
        assert first.result(30).page.hits
    searcher.close()
    assert gated.batches == [1], "the query that gave up never reached the model"


def test_an_index_on_a_server_gets_several_searches_in_flight_each_batching(runtime: ModelRuntime,
                                                                          index: FaissClipIndex) -> None:
    assert index.concurrent_searches == 1, "an index in this process: one search at a time"
    gated = GatedIndex(index, concurrent=2)
    searcher = TextSearcher(runtime, gated, max_batch=64)  # type: ignore[arg-type]
    alone = {text: index.search(runtime.embed_text([text]), OPTIONS)[0] for text in TEXTS[:6]}
    with ThreadPoolExecutor(6) as pool:
        first = [pool.submit(searcher.search, query(text), 30) for text in TEXTS[:2]]
        assert gated.both_in.wait(10), "the second search waited for the first"
        rest = [pool.submit(searcher.search, query(text), 30) for text in TEXTS[2:6]]
        time.sleep(0.3)  # the rest queue, two behind each search in flight
        gated.gate.set()
        answers = [future.result(30) for future in first + rest]
    searcher.close()
    assert gated.most_in_flight == 2, "never more in flight than the index asks for"
    assert sorted(gated.batches) == [1, 1, 2, 2], "what arrived meanwhile was batched behind each search"
    for text, answer in zip(TEXTS[:6], answers, strict=True):
        assert [h.clip.clip_id for h in answer.page.hits] == [h.clip.clip_id for h in alone[text].hits]
