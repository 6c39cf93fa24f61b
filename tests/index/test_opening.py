"""`open_index`: the layout of a location picks the backend, and an index of another model is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidsearch.errors import IndexMismatchError
from vidsearch.index import FaissClipIndex, GpuPolicy, IndexConfig, ShardedClipIndex
from vidsearch.index.opening import ModelIdentity, open_index

from .helpers import MODEL, clustered, make_records

MODEL_ID = ModelIdentity(MODEL, 8, "sha256:weights")


def save(directory: Path, start: int, count: int, checksum: str = "sha256:weights") -> None:
    with FaissClipIndex.create(IndexConfig(8, MODEL, checksum, "Flat", gpu=GpuPolicy.NEVER)) as index:
        index.add(make_records(count, start=start), clustered(count, 8, seed=start))
        index.save(directory)


def test_one_directory_and_a_directory_of_shards(tmp_path: Path) -> None:
    save(tmp_path / "one", 0, 10)
    with open_index(tmp_path / "one", MODEL_ID, create=False, durable=True) as one:
        assert isinstance(one, FaissClipIndex)
        assert (len(one), one.version) == (10, "snapshot-000001")
    save(tmp_path / "many" / "shard-0", 0, 10)
    save(tmp_path / "many" / "shard-1", 10, 5)
    sharded = open_index(tmp_path / "many", MODEL_ID, create=False, durable=True)
    try:
        assert isinstance(sharded, ShardedClipIndex)
        assert (len(sharded), sharded.version) == (15, "snapshot-000001/snapshot-000001")
        sharded.delete_clips(["c11"])
        assert sharded.version == "snapshot-000001/snapshot-000001+1"
    finally:
        sharded.close()


def test_a_new_index_is_written_only_when_changes_are_durable(tmp_path: Path) -> None:
    with open_index(tmp_path / "memory", MODEL_ID, create=True, durable=False) as memory:
        memory.add(make_records(2), clustered(2, 8, seed=1))
        assert memory.version == "new+1"
    assert not (tmp_path / "memory").exists()
    with open_index(tmp_path / "disk", MODEL_ID, create=True, durable=True) as disk:
        disk.add(make_records(2), clustered(2, 8, seed=1))
        assert disk.version == "snapshot-000001+1"
    with open_index(tmp_path / "disk", MODEL_ID, create=False, durable=True) as reopened:
        assert len(reopened) == 2


def test_an_index_of_other_weights_or_none_at_all_is_refused(tmp_path: Path) -> None:
    save(tmp_path / "ix", 0, 3, checksum="sha256:other")
    with pytest.raises(IndexMismatchError, match="sha256:other"):
        open_index(tmp_path / "ix", MODEL_ID, create=False, durable=True)
    with FaissClipIndex.open(tmp_path / "ix") as index:
        assert len(index) == 3, "the refused index was closed: its writer lock is free again"
    with pytest.raises(IndexMismatchError, match="holds no index"):
        open_index(tmp_path / "none", MODEL_ID, create=False, durable=True)
