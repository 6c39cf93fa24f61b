"""Live deletes never scan the index under the searches' lock: a delete or an upsert's replaced clip
becomes a tombstone that every search excludes, and the background fold removes the tombstoned vectors
from a copy of the index, swapped in when done. No search may return a deleted clip at any point."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from vidsearch.index import FaissClipIndex, OpenOptions, SearchFilter, Tuning

from .helpers import build, clustered, make_records

ALL = 400


def _returned(index: FaissClipIndex, queries: np.ndarray, search_filter: SearchFilter | None = None
              ) -> set[str]:
    rows = index.search_hits(queries, ALL, search_filter or SearchFilter(), Tuning(nprobe=8))
    return {hit.clip.clip_id for row in rows for hit in row}


@pytest.fixture
def ivf_dir(tmp_path: Path) -> Path:
    with build(make_records(300), clustered(300, 16, seed=3), factory="IVF8,Flat") as index:
        index.save(tmp_path / "ix")
    return tmp_path / "ix"


def test_a_live_delete_is_a_tombstone_until_the_fold_removes_it(ivf_dir: Path) -> None:
    queries = clustered(4, 16, seed=9)
    deleted = {f"c{i}" for i in range(10, 20)} | {"c101", "c202"}  # video v1 and two single clips
    with FaissClipIndex.open(ivf_dir) as index:
        assert index.delete_videos(["v1"]) == 10
        assert index.delete_clips(["c101", "c202"]) == 2
        stats = index.stats()
        assert (stats.vectors, stats.tombstones, stats.clips) == (300, 12, 288), "no FAISS scan per delete"
        assert not _returned(index, queries) & deleted
        assert not _returned(index, queries, SearchFilter(video_ids=frozenset({"v1", "v10"}))) & deleted
        assert len(_returned(index, queries)) == 288, "every other clip is still found"
        index.flush()
        stats = index.stats()
        assert (stats.vectors, stats.tombstones, stats.clips) == (288, 0, 288), "the fold removed them"
        assert not _returned(index, queries) & deleted
    with FaissClipIndex.open(ivf_dir, OpenOptions(read_only=True)) as reopened:
        assert (reopened.stats().vectors, reopened.stats().tombstones) == (288, 0)
        assert not _returned(reopened, queries) & deleted


def test_an_upserted_clip_shows_its_new_vector_only(ivf_dir: Path) -> None:
    records = make_records(300)
    with FaissClipIndex.open(ivf_dir) as index:
        target = clustered(1, 16, seed=77)
        index.upsert(records[5:6], target)
        hits = index.search_hits(target, ALL, SearchFilter(), Tuning(nprobe=8))[0]
        c5 = [hit for hit in hits if hit.clip.clip_id == "c5"]
        assert len(c5) == 1
        assert c5[0].score == pytest.approx(1.0, abs=1e-5)
        assert index.stats().tombstones == 1


def test_searches_during_a_fold_never_see_deleted_clips(ivf_dir: Path) -> None:
    """Deletes and folds race with a searching thread: a tombstone is dropped only with its vector."""
    queries = clustered(2, 16, seed=11)
    seen_deleted: list[set[str]] = []
    deleted: set[str] = set()
    stop = threading.Event()
    with FaissClipIndex.open(ivf_dir) as index:

        def search() -> None:
            while not stop.is_set():
                gone = set(deleted)  # deleted before this search started
                seen_deleted.append(_returned(index, queries) & gone)

        searcher = threading.Thread(target=search)
        searcher.start()
        try:
            for video in range(0, 30, 3):
                index.delete_videos([f"v{video}"])
                deleted |= {f"c{i}" for i in range(video * 10, video * 10 + 10)}
                index.flush()
        finally:
            stop.set()
            searcher.join()
        assert index.stats().tombstones == 0
    assert seen_deleted
    assert not set().union(*seen_deleted)
