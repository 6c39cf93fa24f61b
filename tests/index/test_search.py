"""Search, filters and updates of FaissClipIndex, checked against brute-force numpy."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from vidsearch.errors import (
    ClipIndexError,
    DuplicateClipError,
    IndexMismatchError,
    InvalidClipError,
    InvalidQueryError,
)
from vidsearch.index import (
    MAX_TOP_K,
    ClipRecord,
    FaissClipIndex,
    GpuPolicy,
    Hit,
    IndexConfig,
    SearchFilter,
    SearchOptions,
    TimeRange,
    Tuning,
)

from ..concurrency import AtOnce
from .helpers import brute_force, build, clustered, make_records

N, DIM = 600, 24
Data = tuple[list[ClipRecord], np.ndarray, np.ndarray]

FILTERS = {
    "videos": (
        SearchFilter(video_ids=frozenset({"v3", "v17", "v42"})),
        lambda r: r.video_id in {"v3", "v17", "v42"},
    ),
    "tags": (SearchFilter(tags=frozenset({"red", "blue"})), lambda r: bool(r.tags & {"red", "blue"})),
    "time": (SearchFilter(time_range=TimeRange(5.0, 9.0)), lambda r: r.start_s <= 9.0 and r.end_s > 5.0),
    "point-in-time": (SearchFilter(time_range=TimeRange(4.0, 4.0)), lambda r: r.start_s <= 4.0 < r.end_s),
    "combined": (
        SearchFilter(
            video_ids=frozenset(f"v{i}" for i in range(0, 60, 2)),
            tags=frozenset({"even"}),
            time_range=TimeRange(0.0, 6.0),
        ),
        lambda r: int(r.video_id[1:]) % 2 == 0 and "even" in r.tags and r.start_s <= 6.0 and r.end_s > 0.0,
    ),
}


@pytest.fixture(scope="module")
def data() -> Data:
    return make_records(N), clustered(N, DIM, seed=1), clustered(7, DIM, seed=2)


@pytest.fixture(scope="module")
def flat(data: Data) -> FaissClipIndex:
    records, vectors, _ = data
    return build(records, vectors)


def ids_scores(hits: list[Hit]) -> list[tuple[str, float]]:
    return [(h.clip.clip_id, h.score) for h in hits]


def assert_same(actual: list[list[tuple[str, float]]], expected: list[list[tuple[str, float]]]) -> None:
    for got, want in zip(actual, expected, strict=True):
        assert [c for c, _ in got] == [c for c, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_unfiltered_flat_search_is_exact(flat: FaissClipIndex, data: Data) -> None:
    records, vectors, queries = data
    hits = flat.search_hits(queries, 25, SearchFilter(), Tuning())
    assert_same([ids_scores(h) for h in hits], brute_force(records, vectors, queries, 25))


def test_single_query_matches_the_batched_path(flat: FaissClipIndex, data: Data) -> None:
    _, _, queries = data
    batched = flat.search_hits(queries, 10, SearchFilter(), Tuning())
    singles = [
        flat.search_hits(queries[i : i + 1], 10, SearchFilter(), Tuning())[0] for i in range(len(queries))
    ]
    assert_same([ids_scores(h) for h in batched], [ids_scores(h) for h in singles])


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


def test_empty_filter_result_returns_no_hits(flat: FaissClipIndex, data: Data) -> None:
    hits = flat.search_hits(data[2], 5, SearchFilter(video_ids=frozenset({"nope"})), Tuning())
    assert hits == [[] for _ in range(len(data[2]))]


def test_top_k_limits(flat: FaissClipIndex, data: Data) -> None:
    assert len(flat.search_hits(data[2][:1], MAX_TOP_K, SearchFilter(), Tuning())[0]) == N
    with pytest.raises(InvalidQueryError, match="10000"):
        flat.search_hits(data[2][:1], MAX_TOP_K + 1, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="top_k"):
        SearchOptions(top_k=0)


def test_malformed_queries_are_refused(flat: FaissClipIndex) -> None:
    with pytest.raises(InvalidQueryError, match=r"shape \(n, 24\)"):
        flat.search_hits(np.ones((1, 23), np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="NaN"):
        flat.search_hits(np.full((1, DIM), np.nan, np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="all-zero"):
        flat.search_hits(np.zeros((1, DIM), np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="nprobe"):
        Tuning(nprobe=0)


def test_upsert_delete_and_duplicates() -> None:
    records, vectors = make_records(100), clustered(100, 8, seed=3)
    index = build(records, vectors)
    with pytest.raises(DuplicateClipError, match="c5"):
        index.add(records[5:6], vectors[5:6])
    assert len(index) == 100 == index.faiss_index.ntotal, "a refused add leaves the index unchanged"

    moved = ClipRecord("c5", "v99", "file:///new.mp4", 1.0, 3.0, records[5].model, tags=frozenset({"new"}))
    target = -vectors[7:8]
    index.upsert([moved], target)
    assert len(index) == 100
    top = index.search_hits(target, 1, SearchFilter(), Tuning())[0][0]
    assert (top.clip, round(top.score, 5)) == (moved, 1.0)
    assert index.get(["c5"]) == {"c5": moved}

    assert index.delete_videos(["v0", "v1"]) == 19, "c5 moved to v99"
    assert index.delete_clips(["c5", "c50", "missing"]) == 2
    assert len(index) == 79 == index.faiss_index.ntotal
    remaining = {h.clip.clip_id for h in index.search_hits(vectors[:1], 100, SearchFilter(), Tuning())[0]}
    assert len(remaining) == 79
    assert not remaining & {"c0", "c19", "c5", "c50"}


def test_hnsw_deletes_become_tombstones_that_search_skips() -> None:
    records, vectors = make_records(200), clustered(200, 8, seed=4)
    index = build(records, vectors, factory="HNSW8,Flat")
    assert index.delete_videos(["v0"]) == 10
    stats = index.stats()
    assert (stats.clips, stats.vectors, stats.tombstones) == (190, 200, 10)
    hits = index.search_hits(vectors[:10], 50, SearchFilter(), Tuning(ef_search=400))
    assert all(h.clip.video_id != "v0" for row in hits for h in row)
    assert all(len(row) == 50 for row in hits)


def test_batch_validation() -> None:
    records, vectors = make_records(4), clustered(4, 8, seed=5)
    index = build(records[:1], vectors[:1])
    with pytest.raises(InvalidClipError, match="twice"):
        index.add([records[1], records[1]], vectors[1:3])
    with pytest.raises(InvalidClipError, match="3 records for 2 vectors"):
        index.add(records[1:4], vectors[1:3])
    other = make_records(1, start=9, model="other-model")
    with pytest.raises(IndexMismatchError, match="other-model"):
        index.add(other, vectors[:1])
    with pytest.raises(InvalidClipError, match="start_s"):
        ClipRecord("c", "v", "u", 3.0, 2.0, "m")


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
