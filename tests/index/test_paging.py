"""Pages, grouping per video and page tokens, on every backend (see `conftest.make_index`)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from vidsearch.errors import InvalidPageTokenError, InvalidQueryError
from vidsearch.index import ClipIndex, Hit, SearchFilter, SearchOptions, SearchPage, Tuning

from .conftest import BuildFn
from .helpers import build, clustered, make_records

N, DIM = 400, 16


@pytest.fixture(scope="module")
def index(make_index: BuildFn) -> ClipIndex:
    return make_index(make_records(N), clustered(N, DIM, seed=11))


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(3, DIM, seed=12)


def all_pages(index: ClipIndex, query: np.ndarray, options: SearchOptions) -> list[SearchPage]:
    pages: list[SearchPage] = []
    token = None
    while True:
        page = index.search(query[None], options, [token])[0]
        pages.append(page)
        token = page.next_page_token
        if token is None:
            return pages


def test_pages_concatenate_to_the_full_result_list(index: ClipIndex, queries: np.ndarray) -> None:
    options = SearchOptions(top_k=53, page_size=10)
    full = index.search_hits(queries[:1], 53, SearchFilter(), Tuning())[0]
    pages = all_pages(index, queries[0], options)
    assert [len(p.hits) for p in pages] == [10, 10, 10, 10, 10, 3]
    assert [h for p in pages for h in p.hits] == full


def test_last_page_has_no_token_when_results_run_out(index: ClipIndex, queries: np.ndarray) -> None:
    options = SearchOptions(top_k=30, page_size=10, filter=SearchFilter(video_ids=frozenset({"v1", "v2"})))
    pages = all_pages(index, queries[0], options)
    assert [len(p.hits) for p in pages] == [10, 10]
    assert pages[-1].next_page_token is None


def test_batched_queries_page_independently(index: ClipIndex, queries: np.ndarray) -> None:
    options = SearchOptions(top_k=20, page_size=5)
    first = index.search(queries, options)
    second = index.search(queries, options, [p.next_page_token for p in first])
    for row in range(len(queries)):
        full = index.search_hits(queries[row : row + 1], 20, SearchFilter(), Tuning())[0]
        assert list(first[row].hits + second[row].hits) == full[:10]


def test_grouping_gathers_each_videos_hits_best_first(index: ClipIndex, queries: np.ndarray) -> None:
    top_k = 60
    full = index.search_hits(queries[:1], top_k, SearchFilter(), Tuning())[0]
    pages = all_pages(index, queries[0], SearchOptions(top_k=top_k, page_size=4, group_by_video=True))
    groups = [g for p in pages for g in p.groups]
    assert all(not p.hits for p in pages)
    assert len({g.video_id for g in groups}) == len(groups), "a video appears in one group only"
    assert sorted(h.clip.clip_id for g in groups for h in g.hits) == sorted(h.clip.clip_id for h in full)
    best = [g.best.score for g in groups]
    assert best == sorted(best, reverse=True)
    for group in groups:
        assert all(h.clip.video_id == group.video_id for h in group.hits)
        assert [h.score for h in group.hits] == sorted((h.score for h in group.hits), reverse=True)
    assert len(pages) == -(-len(groups) // 4)


def _first_token(index: ClipIndex, query: np.ndarray, options: SearchOptions) -> str:
    token = index.search(query[None], options)[0].next_page_token
    assert token is not None
    return token


def test_tampered_tokens_are_refused(index: ClipIndex, queries: np.ndarray) -> None:
    options = SearchOptions(top_k=40, page_size=10)
    token = _first_token(index, queries[0], options)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[4] ^= 0x01  # the offset's last byte: jump to another page
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidPageTokenError, match="altered"):
        index.search(queries[:1], options, [forged])


@pytest.mark.parametrize(
    ("token", "message"),
    [("!!!not base64!!!", "base64"), ("", "bytes"), ("AAAA", "bytes")],
)
def test_malformed_tokens_are_refused(
    index: ClipIndex, queries: np.ndarray, token: str, message: str
) -> None:
    with pytest.raises(InvalidPageTokenError, match=message):
        index.search(queries[:1], SearchOptions(top_k=20, page_size=5), [token])


def test_token_is_bound_to_its_query_and_options(index: ClipIndex, queries: np.ndarray) -> None:
    options = SearchOptions(top_k=40, page_size=10)
    token = _first_token(index, queries[0], options)
    with pytest.raises(InvalidPageTokenError, match="another query"):
        index.search(queries[1:2], options, [token])
    with pytest.raises(InvalidPageTokenError, match="another query"):
        index.search(queries[:1], SearchOptions(top_k=40, page_size=10, group_by_video=True), [token])


def test_token_from_another_index_is_refused(index: ClipIndex, queries: np.ndarray) -> None:
    other = build(make_records(N), clustered(N, DIM, seed=11))
    options = SearchOptions(top_k=40, page_size=10)
    with pytest.raises(InvalidPageTokenError, match="another index"):
        other.search(queries[:1], options, [_first_token(index, queries[0], options)])


def test_token_count_must_match_queries(index: ClipIndex, queries: np.ndarray) -> None:
    with pytest.raises(InvalidQueryError, match="2 page tokens for 3 queries"):
        index.search(queries, SearchOptions(top_k=5), [None, None])
    with pytest.raises(InvalidQueryError, match="page_size"):
        SearchOptions(top_k=5, page_size=6)


def _hit_ids(hits: tuple[Hit, ...]) -> list[str]:
    return [h.clip.clip_id for h in hits]


def test_default_page_is_the_whole_result(index: ClipIndex, queries: np.ndarray) -> None:
    page = index.search(queries[:1], SearchOptions(top_k=15))[0]
    assert page.next_page_token is None
    assert _hit_ids(page.hits) == [
        h.clip.clip_id for h in index.search_hits(queries[:1], 15, SearchFilter(), Tuning())[0]
    ]
