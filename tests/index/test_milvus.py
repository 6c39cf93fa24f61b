"""What only the Milvus backend has: its collection, its server, its addresses and expressions."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vidsearch.errors import (
    ClipIndexError,
    ConfigError,
    IndexFormatError,
    IndexMismatchError,
)
from vidsearch.index import ClipRecord, SearchFilter, TimeRange, Tuning
from vidsearch.index.milvus import LocalMilvus, MilvusClipIndex, MilvusIndexSpec, MilvusTarget
from vidsearch.index.milvus.expressions import filter_expression, string_literal
from vidsearch.index.milvus.local_server import group_members, write_config

from .conftest import milvus_collection
from .helpers import MODEL, brute_force, clustered, make_records


def test_string_literals_escape_everything_but_plain_characters() -> None:
    assert string_literal("v12_a-b.c:d/e#f") == '"v12_a-b.c:d/e#f"'
    assert string_literal('a"b') == '"a\\u0022b"'
    assert string_literal("a\\b'c") == '"a\\u005cb\\u0027c"'
    assert string_literal("\U0001f3ac") == '"\\U0001f3ac"'
    assert string_literal("x) or (1==1") == '"x\\u0029 or \\u00281\\u003d\\u003d1"'


def test_filter_expression_combines_every_condition() -> None:
    search_filter = SearchFilter(
        video_ids=frozenset({"b", "a"}), tags=frozenset({"t"}), time_range=TimeRange(1.5, 2.0)
    )
    assert filter_expression(search_filter) == (
        'video_id in ["a", "b"] and array_contains_any(tags, ["t"]) and (start_s <= 2.0 and end_s > 1.5)'
    )
    assert filter_expression(SearchFilter()) is None


def test_addresses_parse_into_targets() -> None:
    target = MilvusTarget.parse("milvus://db.example:19531/clips_vit")
    assert (target.uri, target.collection) == ("http://db.example:19531", "clips_vit")
    assert MilvusTarget.parse("milvus+https://h/c").uri == "https://h:19530"
    assert target.address == "milvus://db.example:19531/clips_vit"
    assert target.db_name == "", "Milvus's default database"
    in_db = MilvusTarget.parse("milvus://db.example/media/clips_vit")
    assert (in_db.db_name, in_db.collection) == ("media", "clips_vit")
    assert in_db.address == "milvus://db.example:19530/media/clips_vit"
    with pytest.raises(ConfigError, match="database name '1media'"):
        MilvusTarget.parse("milvus://db.example/1media/clips")
    for bad in ("milvus://host:1/", "http://host/c", "milvus://host:99999/c", "milvus://h/bad-name",
                "milvus://h/a/b/c"):
        with pytest.raises(ConfigError):
            MilvusTarget.parse(bad)
    with pytest.raises(ConfigError, match="IVF_PQ"):
        MilvusIndexSpec("IVF_PQ")
    assert target.concurrent_searches == 4, "searches in flight to the server, by default"
    with pytest.raises(ConfigError, match="concurrent_searches"):
        MilvusTarget(uri="http://h:1", collection="c", concurrent_searches=0)


@pytest.mark.parametrize(("index_type", "build", "search", "message"), [
    ("IVF_FLAT", {"nlists": 64}, {}, "IVF_FLAT has no build parameter 'nlists': it takes nlist"),
    ("HNSW", {"M": 16, "Mx": 16}, {}, "HNSW has no build parameter 'Mx': it takes M, efConstruction"),
    ("HNSW", {}, {"nprobe": 8}, "HNSW has no search parameter 'nprobe': it takes ef"),
    ("FLAT", {"nlist": 8}, {}, "FLAT has no build parameter 'nlist': it takes none"),
    ("HNSW", {"M": "16"}, {}, "HNSW build parameter M is a whole number, got '16'"),
    ("HNSW", {}, {"ef": 1.5}, "HNSW search parameter ef is a whole number, got 1.5"),
    ("GPU_CAGRA", {"build_algo": 1}, {}, "GPU_CAGRA build parameter build_algo is text, got 1"),
])  # fmt: skip
def test_an_index_parameter_milvus_would_ignore_or_misread_is_refused(
    index_type: str, build: dict[str, int | str], search: dict[str, int | str], message: str
) -> None:
    """Milvus 2.3.5 stores an unknown key beside the default and ignores it: a typo must not pass."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        MilvusIndexSpec(index_type, build, search)
    spec = MilvusIndexSpec("GPU_CAGRA", {"graph_degree": 64, "build_algo": "NN_DESCENT"}, {"itopk_size": 256})
    assert spec.build == {"intermediate_graph_degree": 64, "graph_degree": 64, "build_algo": "NN_DESCENT"}
    assert spec.search == {"itopk_size": 256}


def test_server_is_reachable_on_loopback_only(milvus_server: LocalMilvus) -> None:
    """Milvus runs in a network namespace of its own; out here only the launcher's relays listen."""
    ours = os.readlink("/proc/self/ns/net")
    group = milvus_server.processes()
    assert len(group) >= 2, "the launcher and Milvus"
    namespaces = {os.readlink(p / "ns/net") for p in group}
    assert len(namespaces) == 1
    assert ours not in namespaces
    inodes = {_socket_inode(fd) for p in group for fd in (p / "fd").iterdir()} - {None}
    listening = [
        fields[1]
        for table in ("tcp", "tcp6")
        for fields in (line.split() for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[9]) in inodes
    ]
    assert len(listening) == 2, "the gRPC and health relays"
    assert all(address.startswith("0100007F:") for address in listening), listening


OWNER = """
import sys, time
from pathlib import Path
from vidsearch.index.milvus import LocalMilvus
server = LocalMilvus(Path(sys.argv[1]), startup_timeout_s=240)
server.start()
print(server.processes()[0].name, flush=True)  # the launcher: the group's leader
time.sleep(3600)
"""


def test_a_server_whose_owner_is_killed_goes_down_with_it(tmp_path: Path) -> None:
    """An owner SIGKILLed without stopping its server (a benchmark past a test's timeout) leaves no
    Milvus running: the launcher sees its stdin pipe close and kills Milvus, then exits."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    group = 0
    try:
        assert owner.stdout is not None
        group = int(owner.stdout.readline())
        assert len(group_members(group)) >= 2, "the launcher and Milvus are up"
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 30
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(group) == [], "Milvus outlived its owner"
    finally:
        owner.kill()
        if group and group_members(group):
            os.killpg(group, signal.SIGKILL)


def test_segment_size_is_set_in_the_server_config_and_sealed_at_full_size(tmp_path: Path) -> None:
    default = write_config(tmp_path).read_text()
    larger = write_config(tmp_path, segment_mb=8192).read_text()
    assert "    maxSize: 512 # Maximum size of a segment in MB" in default
    assert "    sealProportion: 0.23" in default
    assert "    maxBinlogFileNumber: 32" in default
    assert "    maxSize: 8192 # Maximum size of a segment in MB" in larger
    assert "    sealProportion: 1.0" in larger
    assert "    maxBinlogFileNumber: 8192" in larger
    changed = [(a, b) for a, b in zip(default.splitlines(), larger.splitlines(), strict=True) if a != b]
    assert len(changed) == 3, "the log's maxSize (also 'maxSize:') is left alone"
    with pytest.raises(ValueError, match="segment_mb"):
        LocalMilvus(tmp_path / "none", segment_mb=0)


def _socket_inode(fd: Path) -> int | None:
    try:
        target = os.readlink(fd)
    except OSError:
        return None
    return int(target[8:-1]) if target.startswith("socket:[") else None


def test_collection_of_another_model_or_dimension_is_refused(milvus_server: LocalMilvus) -> None:
    index = milvus_collection(milvus_server, dim=8)
    try:
        target = index.target
        with pytest.raises(IndexMismatchError, match="8-d vectors, expected 16-d"):
            MilvusClipIndex.open(target, expect_dim=16)
        with pytest.raises(IndexMismatchError, match="expected 'other'"):
            MilvusClipIndex.open(target, expect_model="other")
        with MilvusClipIndex.open(target, expect_dim=8, expect_model=MODEL) as again:
            assert again.page_token_key == index.page_token_key, "pages continue in another process"
        with pytest.raises(ClipIndexError, match="exists already"):
            milvus_collection_named(milvus_server, target.collection)
    finally:
        index.drop()
        index.close()
    with pytest.raises(IndexMismatchError, match="no collection"):
        MilvusClipIndex.open(target)


def milvus_collection_named(server: LocalMilvus, name: str) -> MilvusClipIndex:
    from vidsearch.index.milvus import MilvusCollectionConfig

    return MilvusClipIndex.create(MilvusTarget(server.uri, name), MilvusCollectionConfig(dim=8, model=MODEL))


def test_foreign_collection_is_not_opened(milvus_server: LocalMilvus) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server.uri)
    try:
        client.create_collection("foreign", dimension=8)
        with pytest.raises(IndexFormatError, match="not a vidsearch clip collection"):
            MilvusClipIndex.open(MilvusTarget(milvus_server.uri, "foreign"))
    finally:
        client.drop_collection("foreign")
        client.close()


@pytest.mark.slow
def test_hnsw_collection_finds_the_exact_neighbours(milvus_server: LocalMilvus) -> None:
    records, vectors, queries = make_records(1000), clustered(1000, 32, seed=21), clustered(20, 32, seed=22)
    with milvus_collection(milvus_server, 32, index_type="HNSW") as index:
        index.add(records, vectors)
        index.flush()
        hits = index.search_hits(queries, 10, SearchFilter(), Tuning(ef_search=64))
        expected = brute_force(records, vectors, queries, 10)
        found = sum(
            len({h.clip.clip_id for h in got} & {c for c, _ in want})
            for got, want in zip(hits, expected, strict=True)
        )
        assert found / (10 * len(queries)) >= 0.9
        assert index.stats().index_type == "HNSW"
        assert index.concurrent_searches == 4, "the target's: searches the server keeps in flight"
        index.drop()


def test_loaded_segments_hold_every_sealed_row(milvus_server: LocalMilvus) -> None:
    """After a bulk load the query nodes hold the rows in sealed segments, and say how many each has."""
    with milvus_collection(milvus_server, 16, index_type="IVF_FLAT") as index:
        assert index.loaded_segments() == []
        index.add(make_records(300), clustered(300, 16, seed=51))
        index.finish_bulk_load()
        segments = index.loaded_segments()
        assert segments
        assert sum(segments) == 300
        assert segments == sorted(segments, reverse=True)
        index.drop()


def test_video_count_follows_upserts_and_deletes_without_scanning_again(
    milvus_server: LocalMilvus, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, vectors = make_records(30), clustered(30, 8, seed=31)  # videos v0, v1, v2 of 10 clips
    with milvus_collection(milvus_server, 8) as index:
        index.add(records, vectors)
        assert index.stats().videos == 3
        scans = 0
        scan = index._scan_videos

        def counted_scan() -> int:
            nonlocal scans
            scans += 1
            return scan()

        monkeypatch.setattr(index, "_scan_videos", counted_scan)
        lone = ClipRecord("lone", "v9", "file:///v9.mp4", 0.0, 2.0, MODEL)
        index.add([lone], vectors[:1])
        assert index.videos() == 4
        # the lone clip moves to a video that exists: v9 is left without clips
        index.upsert([dataclasses.replace(lone, video_id="v0")], vectors[:1])
        assert index.videos() == 3
        index.delete_clips([f"c{i}" for i in range(10, 20)])  # every clip of v1
        assert index.videos() == 2
        index.delete_clips(["c0"])  # v0 keeps its other clips
        assert index.videos() == 2
        assert index.delete_videos(["v2", "nobody"]) == 10
        assert index.videos() == 1
        assert scans == 0, "the count was kept, not rescanned"
        assert scan() == 1
        # another process's write is noticed (the clip count changed) and counted afresh
        with MilvusClipIndex.open(index.target) as other:
            other.add(make_records(10, start=100), clustered(10, 8, seed=32))
        deadline = time.monotonic() + 10  # another client's write reaches this one's reads within a tick
        while len(index) != 29 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index.videos() == 2
        assert scans == 1
        index.drop()


def test_a_batch_is_one_search_call_and_agrees_with_single_queries(
    milvus_server: LocalMilvus, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, vectors = make_records(200), clustered(200, 8, seed=41)
    queries = clustered(64, 8, seed=42)
    with milvus_collection(milvus_server, 8) as index:
        index.add(records, vectors)
        index.delete_clips(["c5", "c77"])
        singles = [index.search_hits(q[None, :], 10, SearchFilter(), Tuning())[0] for q in queries]
        calls: list[int] = []
        search = index._client.search

        def counted_search(*args: object, **kwargs: Any) -> Any:
            calls.append(len(kwargs["data"]))
            assert all(isinstance(row, bytes) and len(row) == 8 * 4 for row in kwargs["data"])  # float32 rows
            return search(*args, **kwargs)

        monkeypatch.setattr(index._client, "search", counted_search)
        batch = index.search_hits(queries, 10, SearchFilter(), Tuning())  # 640 hits: ids, then one lookup
        assert calls == [64]
        assert [[(h.clip, h.score) for h in row] for row in batch] == [
            [(h.clip, pytest.approx(h.score, abs=1e-6)) for h in row] for row in singles
        ]
        assert not {"c5", "c77"} & {h.clip.clip_id for row in batch for h in row}
        index.drop()
