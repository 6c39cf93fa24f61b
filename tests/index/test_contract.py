"""The `ClipIndex` contract, run against every backend (FAISS, and a real Milvus server).

Both backends are built exact here (FAISS Flat, Milvus FLAT), so both must give the brute-force
answer: the same clips in the same order with the same scores, filtered or not.
"""

from __future__ import annotations

import numpy as np
import pytest

from vidsearch.errors import (
    DuplicateClipError,
    IndexMismatchError,
    InvalidClipError,
    InvalidPageTokenError,
    InvalidQueryError,
)
from vidsearch.index import (
    MAX_TOP_K,
    ClipIndex,
    ClipRecord,
    PageRequest,
    SearchFilter,
    SearchOptions,
    Tuning,
)

from .conftest import BuildFn
from .helpers import (
    DIM,
    FILTERS,
    Data,
    N,
    assert_same,
    brute_force,
    clustered,
    ids_scores,
    make_records,
    search_data,
)


@pytest.fixture(scope="module")
def data() -> Data:
    return search_data()


@pytest.fixture(scope="module")
def index(make_index: BuildFn, data: Data) -> ClipIndex:
    records, vectors, _ = data
    return make_index(records, vectors)


def test_unfiltered_search_is_exact(index: ClipIndex, data: Data) -> None:
    records, vectors, queries = data
    hits = index.search_hits(queries, 25, SearchFilter(), Tuning())
    assert_same([ids_scores(h) for h in hits], brute_force(records, vectors, queries, 25))


def test_single_query_matches_the_batched_path(index: ClipIndex, data: Data) -> None:
    _, _, queries = data
    batched = index.search_hits(queries, 10, SearchFilter(), Tuning())
    singles = [
        index.search_hits(queries[i : i + 1], 10, SearchFilter(), Tuning())[0] for i in range(len(queries))
    ]
    assert_same([ids_scores(h) for h in batched], [ids_scores(h) for h in singles])


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_search_is_exact(index: ClipIndex, data: Data, name: str) -> None:
    records, vectors, queries = data
    search_filter, keep = FILTERS[name]
    hits = index.search_hits(queries, 12, search_filter, Tuning())
    expected = brute_force(records, vectors, queries, 12, keep)
    assert all(expected), "the filter should let some clips through"
    assert_same([ids_scores(h) for h in hits], expected)


HOSTILE = (
    'v1" or video_id != "',
    "v1' or video_id != '",
    'v1\\" or true or \\"',
    "v1) or (1 == 1",
    'red"] ) or array_contains_any(tags, ["blue',
    "\\",
    '"',
    "\u00e9t\u00e9 \U0001f3ac \n\t",
)


@pytest.fixture(scope="module")
def hostile(make_index: BuildFn) -> tuple[ClipIndex, list[ClipRecord], np.ndarray]:
    """Ordinary clips, and one clip per hostile value whose video id and only tag are that value."""
    records = make_records(30)
    odd = [
        ClipRecord(
            f"odd{i}", value, f"file:///odd{i}.mp4", 0.0, 2.0, records[0].model, tags=frozenset({value})
        )
        for i, value in enumerate(HOSTILE)
    ]
    vectors = clustered(len(records) + len(odd), 8, seed=9)
    return make_index([*records, *odd], vectors), odd, vectors


@pytest.mark.parametrize("number", range(len(HOSTILE)))
def test_filter_values_are_data_never_expression(
    hostile: tuple[ClipIndex, list[ClipRecord], np.ndarray], number: int
) -> None:
    """A video id or tag with quotes, backslashes or operators matches exactly itself."""
    index, odd, vectors = hostile
    value, clip = HOSTILE[number], odd[number]
    for search_filter in (SearchFilter(video_ids=frozenset({value})), SearchFilter(tags=frozenset({value}))):
        hits = index.search_hits(vectors[:1], 50, search_filter, Tuning())[0]
        assert [h.clip for h in hits] == [clip]
    assert index.get([clip.clip_id]) == {clip.clip_id: clip}


def test_empty_filter_result_returns_no_hits(index: ClipIndex, data: Data) -> None:
    queries = data[2]
    for search_filter in (SearchFilter(video_ids=frozenset({"nope"})), SearchFilter(tags=frozenset())):
        assert index.search_hits(queries, 5, search_filter, Tuning()) == [[] for _ in range(len(queries))]


def test_top_k_limits(index: ClipIndex, data: Data) -> None:
    assert len(index.search_hits(data[2][:1], MAX_TOP_K, SearchFilter(), Tuning())[0]) == N
    with pytest.raises(InvalidQueryError, match="10000"):
        index.search_hits(data[2][:1], MAX_TOP_K + 1, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="top_k"):
        SearchOptions(top_k=0)


def test_malformed_queries_are_refused(index: ClipIndex) -> None:
    with pytest.raises(InvalidQueryError, match=r"shape \(n, 24\)"):
        index.search_hits(np.ones((1, 23), np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="NaN"):
        index.search_hits(np.full((1, DIM), np.nan, np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="all-zero"):
        index.search_hits(np.zeros((1, DIM), np.float32), 5, SearchFilter(), Tuning())
    with pytest.raises(InvalidQueryError, match="nprobe"):
        Tuning(nprobe=0)


def test_upsert_delete_and_duplicates(make_index: BuildFn) -> None:
    records, vectors = make_records(100), clustered(100, 8, seed=3)
    index = make_index(records, vectors)
    with pytest.raises(DuplicateClipError, match="c5"):
        index.add(records[5:6], vectors[5:6])
    assert len(index) == 100, "a refused add leaves the index unchanged"

    moved = ClipRecord("c5", "v99", "file:///new.mp4", 1.0, 3.0, records[5].model, tags=frozenset({"new"}))
    target = -vectors[7:8]
    index.upsert([moved], target)
    assert len(index) == 100
    top = index.search_hits(target, 1, SearchFilter(), Tuning())[0][0]
    assert (top.clip, round(top.score, 5)) == (moved, 1.0)
    assert index.get(["c5"]) == {"c5": moved}

    assert index.delete_videos(["v0", "v1"]) == 19, "c5 moved to v99"
    assert index.delete_clips(["c5", "c50", "missing"]) == 2
    assert len(index) == 79
    remaining = {h.clip.clip_id for h in index.search_hits(vectors[:1], 100, SearchFilter(), Tuning())[0]}
    assert len(remaining) == 79
    assert not remaining & {"c0", "c19", "c5", "c50"}
    assert index.stats().clips == 79


def test_batch_validation(make_index: BuildFn) -> None:
    records, vectors = make_records(4), clustered(4, 8, seed=5)
    index = make_index(records[:1], vectors[:1])
    with pytest.raises(InvalidClipError, match="twice"):
        index.add([records[1], records[1]], vectors[1:3])
    with pytest.raises(InvalidClipError, match="3 records for 2 vectors"):
        index.add(records[1:4], vectors[1:3])
    other = make_records(1, start=9, model="other-model")
    with pytest.raises(IndexMismatchError, match="other-model"):
        index.add(other, vectors[:1])
    with pytest.raises(InvalidClipError, match="start_s"):
        ClipRecord("c", "v", "u", 3.0, 2.0, "m")
    assert len(index) == 1


def test_batch_search_gives_each_query_its_own_page(index: ClipIndex, data: Data) -> None:
    """One `search_batch` over queries with different options (sizes, grouping, filters) gives each the
    page that `search` gives it alone, and a bad page token fails its own query only."""
    queries = data[2][:5]
    options = [
        SearchOptions(top_k=7),
        SearchOptions(top_k=20, page_size=4),
        SearchOptions(top_k=15, group_by_video=True, page_size=2),
        SearchOptions(top_k=9, filter=FILTERS["tags"][0]),
        SearchOptions(top_k=30, page_size=5),
    ]
    alone = [index.search(queries[i : i + 1], options[i])[0] for i in range(5)]
    second = index.search(queries[4:5], options[4], [alone[4].next_page_token])[0]
    requests = [PageRequest(o) for o in options[:4]] + [PageRequest(options[4], alone[4].next_page_token)]
    batched = index.search_batch(queries, requests)
    assert batched[:4] == alone[:4]
    assert batched[4] == second
    assert second.hits != alone[4].hits
    mixed = index.search_batch(queries[:2], [PageRequest(options[0], "not-a-token"), PageRequest(options[1])])
    assert isinstance(mixed[0], InvalidPageTokenError)
    assert mixed[1] == alone[1]
    with pytest.raises(InvalidQueryError, match="2 requests for 5 queries"):
        index.search_batch(queries, requests[:2])
