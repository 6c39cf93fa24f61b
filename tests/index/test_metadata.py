"""The SQLite metadata store on its own: ids, records, filters, snapshots, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import DuplicateClipError, IndexFormatError
from vidsearch.index import SearchFilter, TimeRange
from vidsearch.index.metadata import MetadataStore

from .helpers import make_records


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(tmp_path / "meta.sqlite")
    records = make_records(40)
    with store.transaction() as conn:
        store.insert(conn, store.allocate_ids(conn, 40), records)
    return store


def test_records_round_trip_with_tags_and_attributes(store: MetadataStore) -> None:
    records = make_records(40)
    got = store.records(np.array([0, 7, 39, 1000]))
    assert got == {0: records[0], 7: records[7], 39: records[39]}
    assert got[7].tags == frozenset({"green"})
    assert got[7].attributes == {"i": 7}


def test_wal_mode_is_on(store: MetadataStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ids_are_never_reused(store: MetadataStore) -> None:
    with store.transaction() as conn:
        store.delete(conn, np.array([38, 39]))
        fresh = store.allocate_ids(conn, 2)
    assert fresh.tolist() == [40, 41]
    assert store.count() == 38


def test_duplicate_clip_ids_roll_back_the_whole_batch(store: MetadataStore) -> None:
    batch = make_records(2, start=39)  # c39 exists, c40 is new
    with pytest.raises(DuplicateClipError, match=r"\['c39'\]"), store.transaction() as conn:
        store.insert(conn, store.allocate_ids(conn, 2), batch)
    assert store.count() == 40
    assert store.ids_for_clips(["c40"]) == {}
    assert store.get_meta("next_id") == "40"


@pytest.mark.parametrize(
    ("search_filter", "expected"),
    [
        (SearchFilter(video_ids=frozenset({"v1"})), list(range(10, 20))),
        (SearchFilter(video_ids=frozenset()), []),
        (SearchFilter(tags=frozenset({"blue", "nope"})), list(range(2, 40, 3))),
        (SearchFilter(tags=frozenset({"even"}), video_ids=frozenset({"v0"})), [0, 2, 4, 6, 8]),
        # clips span [2j, 2j + 2): [4, 5] overlaps j = 2 only; the point 6.0 lies in j = 3 only
        (SearchFilter(time_range=TimeRange(4.0, 5.0), video_ids=frozenset({"v2"})), [22]),
        (SearchFilter(time_range=TimeRange(6.0, 6.0), video_ids=frozenset({"v2"})), [23]),
        (SearchFilter(time_range=TimeRange(3.9, 6.0), video_ids=frozenset({"v2"})), [21, 22, 23]),
    ],
)
def test_filters(store: MetadataStore, search_filter: SearchFilter, expected: list[int]) -> None:
    assert store.filter_ids(search_filter).tolist() == expected


def test_backup_is_a_single_readable_file(store: MetadataStore, tmp_path: Path) -> None:
    target = tmp_path / "snapshot.sqlite"
    store.backup_to(target)
    assert not Path(f"{target}-wal").exists()
    copy = MetadataStore(target, read_only=True)
    assert copy.count() == 40
    assert copy.records(np.array([5])) == store.records(np.array([5]))


def test_not_a_metadata_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexFormatError, match="not a vidsearch metadata database"):
        MetadataStore(path, read_only=True)


def test_reads_from_many_threads_while_writing(store: MetadataStore) -> None:
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                rows = store.records(np.arange(10))
                assert len(rows) == 10
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for start in range(40, 240, 20):
        with store.transaction() as conn:
            store.insert(conn, store.allocate_ids(conn, 20), make_records(20, start=start))
    for thread in threads:
        thread.join()
    assert not failures
    assert store.count() == 240
