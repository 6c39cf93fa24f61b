"""Index directories: manifest, atomic snapshots, compatibility checks, memory-mapped loading."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import IndexDeviceError, IndexFormatError, IndexMismatchError, IndexReadOnlyError
from vidsearch.formats.checksum import sha256_file
from vidsearch.index import FaissClipIndex, GpuPolicy, IndexConfig, OpenOptions, SearchFilter, Tuning
from vidsearch.index.persistence import (
    CURRENT,
    INDEX_FILE,
    MANIFEST,
    METADATA_FILE,
    WORK_DIR,
    WRITER_LOCK,
    current_snapshot,
)

from .helpers import MODEL, build, clustered, make_records


def contents(index: FaissClipIndex, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    """Everything an index holds, as seen through search: every clip, its record and its score."""
    hits = index.search_hits(queries, len(index), SearchFilter(), Tuning())
    return [[(repr(h.clip), round(h.score, 5)) for h in row] for row in hits]


def test_round_trip_keeps_vectors_metadata_and_manifest(tmp_path: Path) -> None:
    records, vectors = make_records(300), clustered(300, 16, seed=1)
    index = FaissClipIndex.create(
        IndexConfig(
            dim=16, model=MODEL, model_checksum="sha256:feed", factory="IVF8,Flat", gpu=GpuPolicy.NEVER
        )
    )
    index.train(vectors)
    index.add(records, vectors)
    index.delete_videos(["v3"])
    snapshot = index.save(tmp_path / "ix")

    manifest = json.loads((snapshot / MANIFEST).read_text())
    assert manifest["dim"] == 16
    assert manifest["count"] == 290
    assert manifest["factory"] == "IVF8,Flat"
    assert manifest["model"] == MODEL
    assert manifest["model_checksum"] == "sha256:feed"
    assert manifest["metric"] == "inner_product"
    assert manifest["format"] == "vidsearch-index"
    assert manifest["format_version"] == 2
    assert manifest["params"] == {"nlist": 8, "nprobe": 16, "train_size": 300}
    assert set(manifest["files"]) == {INDEX_FILE, METADATA_FILE}
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (snapshot / name).stat().st_size, "sha256": sha256_file(snapshot / name)}

    queries = clustered(4, 16, seed=2)
    with FaissClipIndex.open(tmp_path / "ix", OpenOptions(read_only=True)) as reopened:
        assert len(reopened) == 290
        assert reopened.factory == "IVF8,Flat"
        assert contents(reopened, queries) == contents(index, queries)
        assert reopened.page_token_key == index.page_token_key, "page tokens survive a restart"


def test_reopened_index_keeps_accepting_changes(tmp_path: Path) -> None:
    records, vectors = make_records(60), clustered(60, 8, seed=3)
    build(records[:30], vectors[:30]).save(tmp_path / "ix")
    with FaissClipIndex.open(tmp_path / "ix") as index:
        index.add(records[30:], vectors[30:])
        index.flush()
    with FaissClipIndex.open(tmp_path / "ix", OpenOptions(read_only=True)) as index:
        assert len(index) == 60
        assert index.get(["c59"])["c59"] == records[59]


def test_save_replaces_the_snapshot_and_cleans_up(tmp_path: Path) -> None:
    records, vectors = make_records(20), clustered(20, 8, seed=4)
    index = build(records, vectors)
    first = index.save(tmp_path)
    (tmp_path / ".tmp-000009-dead").mkdir()  # a save that crashed
    (tmp_path / "snapshot-000007").mkdir()  # renamed but never made current
    second = index.save()
    assert current_snapshot(tmp_path) == second != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, second.name, WRITER_LOCK])
    assert second.name == "snapshot-000002"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (OpenOptions(expect_model="viclip-l14"), "'test-model', expected 'viclip-l14'"),
        (OpenOptions(expect_dim=768), "8-d vectors, expected 768-d"),
        (OpenOptions(expect_model_checksum="sha256:other"), "checksum"),
    ],
)
def test_index_of_another_model_is_refused(tmp_path: Path, options: OpenOptions, message: str) -> None:
    build(make_records(5), clustered(5, 8, seed=5)).save(tmp_path)
    with pytest.raises(IndexMismatchError, match=message):
        FaissClipIndex.open(tmp_path, options)


def test_not_an_index_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="not a vidsearch index directory"):
        FaissClipIndex.open(tmp_path)


def test_damaged_snapshots_are_refused(tmp_path: Path) -> None:
    build(make_records(50), clustered(50, 8, seed=6)).save(tmp_path)
    snapshot = current_snapshot(tmp_path)
    data = (snapshot / INDEX_FILE).read_bytes()
    (snapshot / INDEX_FILE).write_bytes(data[:-100])
    with pytest.raises(IndexFormatError, match="manifest says"):
        FaissClipIndex.open(tmp_path)

    manifest = json.loads((snapshot / MANIFEST).read_text())
    manifest["format_version"] = 99
    (snapshot / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99"):
        FaissClipIndex.open(tmp_path)

    (snapshot / MANIFEST).write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable manifest"):
        FaissClipIndex.open(tmp_path)


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def test_large_index_loads_memory_mapped_and_read_only(tmp_path: Path) -> None:
    n, dim = 20_000, 1024  # an 80 MB flat index
    records, vectors = make_records(n), clustered(n, dim, seed=7)
    build(records, vectors).save(tmp_path)
    del vectors

    before = _rss_anon_mb()
    with FaissClipIndex.open(tmp_path, OpenOptions(mmap=True)) as mapped:
        hits = mapped.search_hits(clustered(2, dim, seed=8), 5, SearchFilter(), Tuning())
        mapped_growth = _rss_anon_mb() - before
        assert mapped.stats().read_only
        assert all(len(row) == 5 for row in hits)
        with pytest.raises(IndexReadOnlyError, match="read-only"):
            mapped.delete_clips(["c1"])
        with pytest.raises(IndexReadOnlyError):
            mapped.add(records[:1], np.ones((1, dim), np.float32))
    before = _rss_anon_mb()
    with FaissClipIndex.open(tmp_path, OpenOptions(mmap=False, read_only=True)) as loaded:
        loaded_growth = _rss_anon_mb() - before
        assert len(loaded) == n
    assert loaded_growth > 70, "reading the index copies its 80 MB of vectors into memory"
    assert mapped_growth < 20, "a memory-mapped index leaves its vectors in the page cache"


def test_mmap_is_chosen_by_size_for_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import vidsearch.index.faiss_state as faiss_index

    build(make_records(10), clustered(10, 8, seed=9)).save(tmp_path)
    caplog.set_level("INFO", logger="vidsearch.index.faiss_state")
    monkeypatch.setattr(faiss_index, "MMAP_MIN_BYTES", 1)
    with FaissClipIndex.open(tmp_path, OpenOptions(read_only=True)):
        assert "(memory-mapped)" in caplog.text
    caplog.clear()
    with FaissClipIndex.open(tmp_path) as index:
        assert not index.stats().read_only, "a writer reads a large index into memory, to change it"
    assert "(memory-mapped)" not in caplog.text
    monkeypatch.setattr(faiss_index, "MMAP_MIN_BYTES", 1 << 40)
    with FaissClipIndex.open(tmp_path, OpenOptions(read_only=True)):
        assert "(memory-mapped)" not in caplog.text


def test_an_index_bound_for_a_gpu_is_never_memory_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mapped index would stay on the CPU: device gpu reads it into memory (and here, with CPU-only
    FAISS, says so), and refuses an explicit mmap; GPUs seen under auto read it too."""
    import vidsearch.index.faiss_state as faiss_state

    build(make_records(10), clustered(10, 8, seed=9)).save(tmp_path)
    monkeypatch.setattr(faiss_state, "MMAP_MIN_BYTES", 1)
    with pytest.raises(IndexDeviceError, match="CPU-only build"):
        FaissClipIndex.open(tmp_path, OpenOptions(gpu=GpuPolicy.REQUIRE))
    assert not (tmp_path / WORK_DIR).exists(), "the refused open left no working copy behind"
    with pytest.raises(IndexDeviceError, match="memory-mapped index stays on the CPU"):
        FaissClipIndex.open(tmp_path, OpenOptions(gpu=GpuPolicy.REQUIRE, mmap=True))
    monkeypatch.setattr(faiss_state, "runs_on_gpu", lambda policy: policy is GpuPolicy.AUTO)
    with FaissClipIndex.open(tmp_path, OpenOptions(gpu=GpuPolicy.AUTO)) as index:
        assert not index.stats().read_only, "read into memory, for the GPU"


def test_the_writers_scratch_copy_lives_in_the_index_and_goes_with_it(tmp_path: Path) -> None:
    """A writer's working copy of the metadata is `<dir>/.work`: removed on close, when the index is
    dropped, and (left by a killed writer) at the next open; nothing is left in the temp directory."""
    ix = tmp_path / "ix"
    build(make_records(5), clustered(5, 8, seed=10)).save(ix)
    temp_before = set(Path(tempfile.gettempdir()).glob("vidsearch-index-*"))
    index = FaissClipIndex.open(ix)
    assert (ix / WORK_DIR / METADATA_FILE).is_file()
    index.close()
    index.close()
    assert not (ix / WORK_DIR).exists()
    FaissClipIndex.open(ix).search_hits(clustered(1, 8, seed=11), 1, SearchFilter(), Tuning())
    assert not (ix / WORK_DIR).exists(), "collected without close(): the finalizer cleaned up"
    (ix / WORK_DIR).mkdir()
    (ix / WORK_DIR / "left-by-a-crash").write_text("stale")
    with FaissClipIndex.open(ix):
        assert not (ix / WORK_DIR / "left-by-a-crash").exists()
    assert set(Path(tempfile.gettempdir()).glob("vidsearch-index-*")) == temp_before
