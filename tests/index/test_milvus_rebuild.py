"""Rebuilding a served Milvus collection (`index build --backend milvus --replace`): the name answers
from the old collection until the new one is complete, then from the new one at once; a failed or
killed build leaves the old one served; a collection is not replaced by one of another model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymilvus import MilvusClient

from vidsearch.errors import ClipIndexError, ConfigError, IndexMismatchError
from vidsearch.index.milvus import LocalMilvus, MilvusClipIndex, MilvusCollectionConfig, MilvusTarget
from vidsearch.index.milvus.build import MilvusBuildOptions, build_collection_from_parquet
from vidsearch.index.milvus.versions import version_name

from .helpers import clustered, make_records, write_shards

NAME = "rebuilt"


def collections(server: LocalMilvus) -> list[str]:
    client = MilvusClient(uri=server.uri)
    try:
        return sorted(c for c in client.list_collections() if c.startswith(NAME))
    finally:
        client.close()


def test_a_version_name_is_the_name_and_the_time_it_was_built() -> None:
    assert version_name("clips", now=0) == "clips__b19700101000000"
    with pytest.raises(ConfigError, match="too long to rebuild: at most 238 characters"):
        version_name("c" * 240)


@pytest.mark.slow
def test_a_rebuild_switches_at_once_and_a_failed_one_leaves_the_old_one_served(
    tmp_path: Path, milvus_server: LocalMilvus, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MilvusTarget(milvus_server.uri, NAME)
    for count in (120, 60):
        write_shards(tmp_path / f"shards{count}", count=count)
    replace = MilvusBuildOptions(replace=True)
    # what `vidsearch serve` creates for a name that does not exist: a plain collection
    served = MilvusClipIndex.create(target, MilvusCollectionConfig(16, "viclip-b16", "sha256:0123"))
    try:
        served.add(make_records(2, model="viclip-b16"), clustered(2, 16, seed=3))
        with pytest.raises(ClipIndexError, match="exists already: --replace"):
            build_collection_from_parquet(tmp_path / "shards120", target)
        orphan = MilvusTarget(milvus_server.uri, f"{NAME}__b20000101000000")  # a build killed long ago
        MilvusClipIndex.create(orphan, MilvusCollectionConfig(16, "viclip-b16")).close()
        running = MilvusTarget(milvus_server.uri, f"{NAME}__b29990101000000")  # a later build, still running
        MilvusClipIndex.create(running, MilvusCollectionConfig(16, "viclip-b16")).close()

        stats = build_collection_from_parquet(tmp_path / "shards120", target, replace)
        assert stats.clips == 120
        assert len(served) == 120, "the server's open index searches the new collection by its name"
        (version,) = set(collections(milvus_server)) - {orphan.collection, running.collection}
        assert f"(= {version})" in stats.backend
        assert stats.params["replicas"] == 1, "as many replicas as the collection it replaced"
        assert collections(milvus_server) == sorted([running.collection, version]), \
            "the plain collection and the killed build's are dropped; the later build's is left alone"
        MilvusClipIndex.remove(running)

        seen_during: list[int] = []
        finish = MilvusClipIndex.finish_bulk_load

        def finish_while_serving(self: MilvusClipIndex) -> None:
            seen_during.append(len(served))
            finish(self)
            seen_during.append(len(served))

        monkeypatch.setattr(MilvusClipIndex, "finish_bulk_load", finish_while_serving)
        assert build_collection_from_parquet(tmp_path / "shards60", target, replace).clips == 60
        assert seen_during == [120, 120], "until it is complete, the name answers from the old collection"
        assert len(served) == 60
        (newer,) = collections(milvus_server)
        assert newer != version

        def fail(self: MilvusClipIndex) -> None:
            raise ClipIndexError("the index build failed")

        monkeypatch.setattr(MilvusClipIndex, "finish_bulk_load", fail)
        with pytest.raises(ClipIndexError, match="the index build failed"):
            build_collection_from_parquet(tmp_path / "shards120", target, replace)
        assert collections(milvus_server) == [newer], "the unfinished collection is dropped"
        assert len(served) == 60, "the old one is still served"
        monkeypatch.undo()
        two_copies = MilvusBuildOptions(replace=True, replicas=2)
        with pytest.raises(ClipIndexError, match="nodes not enough"):  # the test server has one query node
            build_collection_from_parquet(tmp_path / "shards120", target, two_copies)
        assert collections(milvus_server) == [newer]
        assert len(served) == 60

        write_shards(tmp_path / "other", count=12, model="internvideo2-s")
        with pytest.raises(IndexMismatchError, match="build into a new collection name"):
            build_collection_from_parquet(tmp_path / "other", target, replace)
        assert collections(milvus_server) == [newer], "refused before any work"
        assert served.delete_videos(["v0"]) == 6, "writes reach the collection behind the alias"
        served.upsert(make_records(1, model="viclip-b16"), clustered(1, 16, seed=4))
        assert len(served) == 55
        served.drop()
        assert collections(milvus_server) == [], "dropping the name drops the alias and its collection"
    finally:
        served.close()
        drop_leftovers(milvus_server)  # a failed run leaves nothing for the session's other tests


def drop_leftovers(server: LocalMilvus) -> None:
    MilvusClipIndex.remove(MilvusTarget(server.uri, NAME))
    for collection in collections(server):
        MilvusClipIndex.remove(MilvusTarget(server.uri, collection))
