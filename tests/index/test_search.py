"""Search, filters and updates of FaissClipIndex, checked against brute-force numpy."""

from __future__ import annotations

import threading

import faiss
import pytest

from vidsearch.errors import (
    ClipIndexError,
)
from vidsearch.index import (
    FaissClipIndex,
    GpuPolicy,
    IndexConfig,
    SearchFilter,
    Tuning,
)

from ..concurrency import AtOnce
from .helpers import (
    FILTERS,
    Data,
    assert_same,
    brute_force,
    build,
    clustered,
    ids_scores,
    make_records,
    search_data,
)


@pytest.fixture(scope="module")
def data() -> Data:
    return search_data()


@pytest.fixture(scope="module")
def flat(data: Data) -> FaissClipIndex:
    records, vectors, _ = data
    return build(records, vectors)


def test_single_query_restores_the_openmp_thread_count(flat: FaissClipIndex, data: Data) -> None:
    before = faiss.omp_get_max_threads()
    flat.search_hits(data[2][:1], 5, SearchFilter(), Tuning())
    assert faiss.omp_get_max_threads() == before


STRATEGIES = {  # FilteredSearcher settings that force each way of filtering
    "own-vectors": {},
    "id-selector": {"selective_max": 0},
    "over-fetch": {"selective_max": 0, "selectors_supported": False},
}


@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_filtered_flat_search_is_exact(flat: FaissClipIndex, data: Data, name: str, strategy: str) -> None:
    records, vectors, queries = data
    search_filter, keep = FILTERS[name]
    searcher = flat._searcher
    saved = dict(vars(searcher))
    vars(searcher).update(STRATEGIES[strategy])
    try:
        hits = flat.search_hits(queries, 12, search_filter, Tuning())
    finally:
        vars(searcher).update(saved)
    expected = brute_force(records, vectors, queries, 12, keep)
    assert all(expected), "the filter should let some clips through"
    assert_same([ids_scores(h) for h in hits], expected)


def test_selective_filters_on_ivf_probe_every_list(data: Data) -> None:
    records, vectors, queries = data
    index = build(records, vectors, factory="IVF16,Flat")
    search_filter, keep = FILTERS["videos"]
    hits = index.search_hits(queries, 12, search_filter, Tuning(nprobe=1))
    assert not index._searcher.reconstructs, "IVF without a direct map cannot return its vectors"
    assert_same([ids_scores(h) for h in hits], brute_force(records, vectors, queries, 12, keep))
    unfiltered = index.search_hits(queries, 12, SearchFilter(), Tuning(nprobe=1))
    exact = brute_force(records, vectors, queries, 12)
    assert [ids_scores(h) for h in unfiltered] != exact, "nprobe=1 alone is approximate: the test has teeth"


def test_exhaustive_ivf_is_exact_with_filters(data: Data) -> None:
    records, vectors, queries = data
    index = build(records, vectors, factory="IVF8,Flat")
    search_filter, keep = FILTERS["tags"]
    hits = index.search_hits(queries, 10, search_filter, Tuning(nprobe=8))
    assert_same([ids_scores(h) for h in hits], brute_force(records, vectors, queries, 10, keep))


def test_index_without_selector_support_falls_back_to_over_fetching(data: Data) -> None:
    records, vectors, queries = data
    index = build(records, vectors, factory="PQ4x4")  # IndexPQ refuses ID selectors
    index._searcher.selective_max = 0
    search_filter, keep = FILTERS["tags"]
    hits = index.search_hits(queries, 10, search_filter, Tuning())
    assert not index._searcher.selectors_supported
    allowed = {r.clip_id for r in records if keep(r)}
    assert all(h.clip.clip_id in allowed for row in hits for h in row)
    assert all(len(row) == 10 for row in hits)


def test_hnsw_filters_and_tuning(data: Data) -> None:
    records, vectors, queries = data
    index = build(records, vectors, factory="HNSW16,Flat")
    search_filter, keep = FILTERS["combined"]
    hits = index.search_hits(queries, 5, search_filter, Tuning(ef_search=512))
    assert_same([ids_scores(h) for h in hits], brute_force(records, vectors, queries, 5, keep))


def test_pre_transformed_ivf_takes_selectors_through_its_parameters(data: Data) -> None:
    records, vectors, queries = data
    index = build(records, vectors, factory="PCA16,IVF8,Flat")
    index._searcher.selective_max = 0
    search_filter, keep = FILTERS["tags"]
    hits = index.search_hits(queries, 10, search_filter, Tuning(nprobe=8))
    assert index._searcher.selectors_supported
    allowed = {r.clip_id for r in records if keep(r)}
    assert all(len(row) == 10 for row in hits)
    assert all(h.clip.clip_id in allowed for row in hits for h in row)


def test_hnsw_deletes_become_tombstones_that_search_skips() -> None:
    records, vectors = make_records(200), clustered(200, 8, seed=4)
    index = build(records, vectors, factory="HNSW8,Flat")
    assert index.delete_videos(["v0"]) == 10
    stats = index.stats()
    assert (stats.clips, stats.vectors, stats.tombstones) == (190, 200, 10)
    hits = index.search_hits(vectors[:10], 50, SearchFilter(), Tuning(ef_search=400))
    assert all(h.clip.video_id != "v0" for row in hits for h in row)
    assert all(len(row) == 50 for row in hits)


def test_untrained_ivf_refuses_adds() -> None:
    records, vectors = make_records(10), clustered(10, 8, seed=6)
    index = FaissClipIndex.create(_config("IVF4,Flat"))
    with pytest.raises(ClipIndexError, match="trained"):
        index.add(records, vectors)


def test_concurrent_searches_and_adds() -> None:
    records, vectors = make_records(1000), clustered(1000, 16, seed=7)
    index = build(records[:200], vectors[:200])
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for _ in range(40):
                for row in index.search_hits(vectors[:3], 5, SearchFilter(tags=frozenset({"red"})), Tuning()):
                    assert all("red" in h.clip.tags for h in row)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for start in range(200, 1000, 100):
        index.add(records[start : start + 100], vectors[start : start + 100])
    for thread in threads:
        thread.join()
    assert not errors
    assert len(index) == 1000 == index.faiss_index.ntotal


def test_concurrent_searches_look_up_their_rows_one_at_a_time(flat: FaissClipIndex, data: Data) -> None:
    store = flat._s.store
    watched = AtOnce(store.records, pause_s=0.005)  # long enough for the other searches to arrive
    expected = [ids_scores(row) for row in flat.search_hits(data[2], 5, SearchFilter(), Tuning())]
    results: dict[int, list[tuple[str, float]]] = {}
    store.records = watched  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, ids_scores(flat.search_hits(data[2][i : i + 1], 5, SearchFilter(), Tuning())[0])))
            for i in range(len(data[2]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        del store.records
    assert watched.most == 1
    assert_same([results[i] for i in range(len(data[2]))], expected)


def _config(factory: str) -> IndexConfig:
    return IndexConfig(dim=8, model="test-model", factory=factory, gpu=GpuPolicy.NEVER)
