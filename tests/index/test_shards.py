"""A sharded index answers exactly like one index holding everything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import ClipIndexError, DuplicateClipError, IndexMismatchError
from vidsearch.index import (
    ClipRecord,
    FaissClipIndex,
    GpuPolicy,
    IndexConfig,
    PageRequest,
    SearchFilter,
    SearchOptions,
    SearchPage,
    TimeRange,
    Tuning,
)
from vidsearch.index.shards import ShardedClipIndex, shard_of

from .helpers import MODEL, build, clustered, make_records

N, DIM, SHARDS = 500, 16, 3


def empty(dim: int = DIM, model: str = MODEL) -> FaissClipIndex:
    return FaissClipIndex.create(IndexConfig(dim=dim, model=model, factory="Flat", gpu=GpuPolicy.NEVER))


@pytest.fixture(scope="module")
def pair() -> tuple[ShardedClipIndex, FaissClipIndex]:
    records, vectors = make_records(N), clustered(N, DIM, seed=1)
    sharded = ShardedClipIndex([empty() for _ in range(SHARDS)], token_key=b"k" * 32)
    sharded.add(records, vectors)
    return sharded, build(records, vectors)


def test_videos_live_in_exactly_one_shard(pair: tuple[ShardedClipIndex, FaissClipIndex]) -> None:
    sharded, _ = pair
    assert len(sharded) == N
    sizes = [len(shard) for shard in sharded.shards]
    assert all(size > 0 for size in sizes)
    for number, shard in enumerate(sharded.shards):
        for record in shard.get(f"c{i}" for i in range(N)).values():
            assert shard_of(record.video_id, SHARDS) == number
    assert shard_of("v7", 3) == shard_of("v7", 3), "stable, unlike hash()"


@pytest.mark.parametrize(
    "search_filter",
    [SearchFilter(), SearchFilter(tags=frozenset({"red"}), time_range=TimeRange(0.0, 7.0))],
    ids=["all", "filtered"],
)
def test_merged_top_k_equals_the_single_index(
    pair: tuple[ShardedClipIndex, FaissClipIndex], search_filter: SearchFilter
) -> None:
    sharded, single = pair
    queries = clustered(5, DIM, seed=2)
    got = sharded.search_hits(queries, 30, search_filter, Tuning())
    want = single.search_hits(queries, 30, search_filter, Tuning())
    for got_row, want_row in zip(got, want, strict=True):
        assert [h.clip for h in got_row] == [h.clip for h in want_row]
        np.testing.assert_allclose([h.score for h in got_row], [h.score for h in want_row], atol=1e-6)


def test_paging_and_grouping_over_shards(pair: tuple[ShardedClipIndex, FaissClipIndex]) -> None:
    sharded, single = pair
    query = clustered(1, DIM, seed=3)
    options = SearchOptions(top_k=40, page_size=15, group_by_video=True)

    def two_pages(index: ShardedClipIndex | FaissClipIndex) -> list[list[str]]:
        first = index.search(query, options)[0]
        second = index.search(query, options, [first.next_page_token])[0]
        return [[h.clip.clip_id for h in group.hits] for group in first.groups + second.groups]

    assert two_pages(sharded) == two_pages(single)


def test_changes_fan_out() -> None:
    records, vectors = make_records(100), clustered(100, DIM, seed=4)
    sharded = ShardedClipIndex([empty() for _ in range(2)], token_key=b"k" * 32)
    sharded.add(records, vectors)
    with pytest.raises(DuplicateClipError, match="c3"):
        sharded.add(records[3:4], vectors[3:4])
    moved = ClipRecord("c3", "v-new", "u", 0.0, 1.0, MODEL)
    sharded.upsert([moved], vectors[3:4])
    assert sharded.get(["c3"]) == {"c3": moved}
    assert len(sharded) == 100
    assert sharded.delete_videos(["v0", "v-new"]) == 10
    assert sharded.delete_clips(["c99", "nope"]) == 1
    assert len(sharded) == 89
    assert sharded.stats().clips == 89


def test_shards_in_this_process_take_one_search_at_a_time_as_their_shards_do() -> None:
    assert ShardedClipIndex([empty() for _ in range(2)], token_key=b"k" * 32).concurrent_searches == 1


def test_shards_must_agree() -> None:
    with pytest.raises(IndexMismatchError, match="shards disagree"):
        ShardedClipIndex([empty(), empty(dim=8)], token_key=b"k")
    with pytest.raises(IndexMismatchError, match="shards disagree"):
        ShardedClipIndex([empty(), empty(model="other")], token_key=b"k")
    with pytest.raises(ClipIndexError, match="at least one shard"):
        ShardedClipIndex([], token_key=b"k")


def test_open_directories_as_shards(tmp_path: Path) -> None:
    records, vectors = make_records(60), clustered(60, DIM, seed=5)
    build(records[:30], vectors[:30]).save(tmp_path / "a")
    build(records[30:], vectors[30:]).save(tmp_path / "b")
    query = clustered(1, DIM, seed=6)
    options = SearchOptions(top_k=20, page_size=5)
    with_first = ShardedClipIndex.open([tmp_path / "a", tmp_path / "b"])
    token = with_first.search(query, options)[0].next_page_token
    stats = with_first.stats()
    assert (stats.clips, stats.backend.split()[0]) == (60, "2")
    with_first.close()
    reopened = ShardedClipIndex.open([tmp_path / "a", tmp_path / "b"])
    second = reopened.search(query, options, [token])[0]
    assert len(second.hits) == 5, "page tokens survive reopening the same shards"
    reopened.close()


def test_batch_search_over_shards_equals_the_single_index(
    pair: tuple[ShardedClipIndex, FaissClipIndex],
) -> None:
    """Queries with their own options in one batch: each gets the single index's hits, page by page."""
    sharded, single = pair
    queries = clustered(3, DIM, seed=4)
    red = SearchFilter(tags=frozenset({"red"}))
    options = [SearchOptions(top_k=12, page_size=5), SearchOptions(top_k=6, filter=red),
               SearchOptions(top_k=20, group_by_video=True, page_size=3)]
    pages = sharded.search_batch(queries, [PageRequest(o) for o in options])
    for row, (page, option) in enumerate(zip(pages, options, strict=True)):
        alone = single.search(queries[row : row + 1], option)[0]
        assert isinstance(page, SearchPage)
        assert [h.clip.clip_id for h in page.hits] == [h.clip.clip_id for h in alone.hits]
        assert [g.video_id for g in page.groups] == [g.video_id for g in alone.groups]
    follow = sharded.search_batch(queries[:1], [PageRequest(options[0], pages[0].next_page_token)])[0]
    assert isinstance(follow, SearchPage)
    expected = single.search_hits(queries[:1], 10, SearchFilter(), Tuning())[0][5:10]
    assert [h.clip.clip_id for h in follow.hits] == [h.clip.clip_id for h in expected]
