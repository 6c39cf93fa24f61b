"""Serving talks to `ClipIndex` only: a `ShardedClipIndex` is served over real gRPC like one index, and a
second server on the same index directory is refused."""

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from vidsearch.client import SearchClient
from vidsearch.errors import IndexDeviceError, IndexLockedError
from vidsearch.index import ClipRecord, FaissClipIndex, IndexConfig, SearchFilter, Tuning
from vidsearch.index.persistence import INDEX_FILE, current_snapshot
from vidsearch.index.shards import shard_of
from vidsearch.runtime import RuntimeConfig, read_repository
from vidsearch.serving import SearchServer

from ..index.test_integrity import flip
from ..runtime.models import Repository
from .conftest import CLIPS_PER_VIDEO, VIDEOS, Media, settings_for

SHARDS = 2
CLIPS = 40


def write_shards(location: Path, repository: Repository) -> dict[str, np.ndarray]:
    """Two shard directories of random clips of the served model; returns clip id → unit vector."""
    config = RuntimeConfig(model_repository=repository.path)
    models = read_repository(config).facts(config)
    vectors = np.random.default_rng(3).standard_normal((CLIPS, models.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ClipRecord(f"r{i}#00000", f"r{i}", f"file:///r{i}.mp4", 0.0, 1.0, models.model_name)
               for i in range(CLIPS)]
    for shard in range(SHARDS):
        rows = [i for i, r in enumerate(records) if shard_of(r.video_id, SHARDS) == shard]
        config = IndexConfig(models.dim, models.model_name, models.model_checksum, "Flat")
        with FaissClipIndex.create(config) as index:
            index.add([records[i] for i in rows], vectors[rows])
            index.save(location / f"shard-{shard}")
    return {r.clip_id: v for r, v in zip(records, vectors, strict=True)}


def test_a_sharded_index_is_served_searched_and_changed(repository: Repository, media: Media,
                                                        tmp_path: Path) -> None:
    location = tmp_path / "sharded"
    vectors = write_shards(location, repository)
    settings = settings_for(repository, media, location)
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        stats = client.index_stats()
        assert (stats.clips, stats.backend.split(" of ")[0]) == (CLIPS, f"{SHARDS} shards")
        assert stats.index_version == "snapshot-000001/snapshot-000001"
        query = client.embed_text(["a red circle moving left"])[0]
        expected = sorted(vectors, key=lambda clip: -float(vectors[clip] @ query))[:10]
        hits = client.search("a red circle moving left", top_k=10).hits
        assert [h.clip_id for h in hits] == expected, "the shards' top hits merged into the global top 10"
        assert {shard_of(h.video_id, SHARDS) for h in hits} == set(range(SHARDS))
        assert client.ingest(list(VIDEOS))[0].clips == CLIPS_PER_VIDEO
        assert client.delete_video("r0") == 1
        changed = client.index_stats()
        assert changed.clips == CLIPS + len(VIDEOS) * CLIPS_PER_VIDEO - 1
        assert changed.index_version != stats.index_version
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        assert client.index_stats().clips == changed.clips, "every change was durable in its shard"
        assert client.index_stats().index_version == changed.index_version


def test_a_second_server_on_the_same_index_is_refused(repository: Repository, media: Media,
                                                      tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        client.ingest([VIDEOS[0]])
        with pytest.raises(IndexLockedError, match="one writer per index directory"):
            SearchServer(settings).start()
        assert client.health() == "SERVING"
        assert client.index_stats().clips == CLIPS_PER_VIDEO


def test_a_large_index_is_checked_in_the_background_and_its_log_replayed(
    repository: Repository, media: Media, tmp_path: Path
) -> None:
    """`verify_on_open_max_bytes` lowered to 0: every snapshot counts as large. An intact one is served
    with the changes logged after it; a damaged one is never served (health NOT_SERVING)."""
    write_shards(tmp_path / "shards", repository)
    index_dir = tmp_path / "shards" / "shard-0"
    with FaissClipIndex.open(index_dir) as logged:
        snapshot_clips = len(logged)
        logged.delete_clips([next(iter(logged.search_hits(np.ones((1, logged.dim)), 1, SearchFilter(),
                                                           Tuning())[0])).clip.clip_id])
    large = settings_for(repository, media, index_dir, verify_on_open_max_bytes=0)
    with SearchServer(large) as server, SearchClient(server.address) as client:
        started = time.monotonic()
        while client.health() != "SERVING":
            assert time.monotonic() - started < 30
            time.sleep(0.05)
        assert client.index_stats().clips == snapshot_clips - 1, "the logged delete was replayed"
        assert client.ingest([VIDEOS[0]])[0].clips == CLIPS_PER_VIDEO  # still writable
    flip(current_snapshot(index_dir) / INDEX_FILE, 4)
    with SearchServer(large) as server, SearchClient(server.address) as client:
        started = time.monotonic()
        while True:
            with pytest.raises(grpc.RpcError) as refused:
                client.search("a red circle")
            if refused.value.code() != grpc.StatusCode.UNAVAILABLE:  # the check is over
                break
            assert time.monotonic() - started < 30
            time.sleep(0.05)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"{INDEX_FILE}: damaged" in str(refused.value.details())
        assert client.health() == "NOT_SERVING"


def test_index_device_gpu_without_gpu_faiss_refuses_to_start(repository: Repository, media: Media,
                                                              tmp_path: Path) -> None:
    """`index_device = "gpu"` on this machine's CPU-only FAISS: the server says why and does not start;
    `cpu` serves the same index, whose stats say where it runs."""
    with pytest.raises(IndexDeviceError, match="CPU-only build"):
        SearchServer(settings_for(repository, media, tmp_path / "index", index_device="gpu")).start()
    settings = settings_for(repository, media, tmp_path / "index", index_device="cpu")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        assert client.health() == "SERVING"
        assert client.index_stats().device == "cpu"
