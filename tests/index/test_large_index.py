"""A large index (the size thresholds lowered by monkeypatch or option) is still writable and shows
its logged changes, and its digests are checked in the background before it serves anything."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import vidsearch.index.faiss_state as faiss_state
from vidsearch.errors import IndexFormatError
from vidsearch.index import FaissClipIndex, OpenOptions, SearchFilter, Tuning
from vidsearch.index.persistence import INDEX_FILE, current_snapshot

from .helpers import build, clustered, make_records
from .test_integrity import flip

BACKGROUND = OpenOptions(verify_max_bytes=0, verify_in_background=True)


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    """An index directory whose snapshot holds c0–c29 and whose change log adds c30–c39, drops v0."""
    records, vectors = make_records(40), clustered(40, 8, seed=6)
    with build(records[:30], vectors[:30]) as index:
        index.save(tmp_path / "ix")
    with FaissClipIndex.open(tmp_path / "ix") as live:
        live.add(records[30:], vectors[30:])
        live.delete_videos(["v0"])
    return tmp_path / "ix"


def _ids(index: FaissClipIndex) -> set[str]:
    hits = index.search_hits(clustered(1, 8, seed=1), 50, SearchFilter(), Tuning())
    return {hit.clip.clip_id for hit in hits[0]}


def _wait_ready(index: FaissClipIndex) -> None:
    started = time.monotonic()
    while not index.ready():
        assert time.monotonic() - started < 30
        time.sleep(0.01)


def test_a_large_index_replays_its_log_and_stays_writable(
    logged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faiss_state, "MMAP_MIN_BYTES", 1)
    expected = {f"c{i}" for i in range(10, 40)}
    with FaissClipIndex.open(logged, OpenOptions(read_only=True)) as reader:
        assert _ids(reader) == expected, "a reader with changes to replay reads the index into memory"
    with FaissClipIndex.open(logged) as writer:
        assert not writer.stats().read_only
        assert _ids(writer) == expected
        writer.add(make_records(1, start=40), clustered(1, 8, seed=8))
    with FaissClipIndex.open(logged, OpenOptions(read_only=True, verify=False)) as reader:
        assert len(reader) == 31


def test_digests_are_checked_in_the_background_before_serving(logged: Path) -> None:
    with FaissClipIndex.open(logged, BACKGROUND) as index:
        _wait_ready(index)
        assert _ids(index) == {f"c{i}" for i in range(10, 40)}
        index.add(make_records(1, start=40), clustered(1, 8, seed=8))


def test_a_damaged_large_index_is_never_served(logged: Path) -> None:
    index_file = current_snapshot(logged) / INDEX_FILE
    flip(index_file, 4)  # inside the vectors: sizes and counts still agree
    with FaissClipIndex.open(logged, BACKGROUND) as index:
        started = time.monotonic()
        while index._checking is not None and index._checking.is_alive():
            assert time.monotonic() - started < 30
            time.sleep(0.01)
        assert not index.ready()
        with pytest.raises(IndexFormatError, match=f"{INDEX_FILE}: damaged"):
            _ids(index)
        with pytest.raises(IndexFormatError, match=f"{INDEX_FILE}: damaged"):
            index.add(make_records(1, start=40), np.ones((1, 8), np.float32))
