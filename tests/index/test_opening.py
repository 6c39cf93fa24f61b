"""`open_index`: the layout of a location picks the backend, and an index of another model is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vidsearch.errors import IndexMismatchError
from vidsearch.index import FaissClipIndex, GpuPolicy, IndexConfig, ShardedClipIndex
from vidsearch.index.milvus import LocalMilvus, MilvusClipIndex, MilvusIndexSpec, MilvusTarget
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


def test_a_milvus_collection_is_created_with_the_configured_index_and_kept_when_it_exists(
    milvus_server: LocalMilvus, caplog: pytest.LogCaptureFixture
) -> None:
    target = MilvusTarget(milvus_server.uri, "opened_with_ivf")
    ivf = MilvusIndexSpec("IVF_FLAT", {"nlist": 16})
    with open_index(target, MODEL_ID, create=True, durable=True, milvus_index=ivf) as created:
        assert isinstance(created, MilvusClipIndex)
        assert created.index_spec == MilvusIndexSpec("IVF_FLAT", {"nlist": 16}, {"nprobe": 32}), "recorded"
    try:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=milvus_server.uri)
        built = client.describe_index("opened_with_ivf", client.list_indexes("opened_with_ivf")[0])
        client.close()
        assert (built["index_type"], str(built["nlist"])) == ("IVF_FLAT", "16"), "what Milvus built"
        with caplog.at_level(logging.WARNING, logger="vidsearch.index.opening"):
            caplog.clear()
            with open_index(target, MODEL_ID, create=True, durable=True, milvus_index=ivf):
                pass
            warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert not warned, "the same index as recorded with its defaults: nothing to report"
            with open_index(target, MODEL_ID, create=True, durable=True,
                            milvus_index=MilvusIndexSpec("HNSW")) as kept:
                assert kept.index_spec.index_type == "IVF_FLAT", "an existing collection keeps its index"
        assert "exists with IVF_FLAT" in caplog.text
        assert "applies only to a collection the server creates" in caplog.text
    finally:
        MilvusClipIndex.remove(target)
