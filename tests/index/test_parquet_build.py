"""The Parquet embedding shard schema, streaming reads, and `build_from_parquet`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidsearch.errors import DuplicateClipError, IndexFormatError, IndexMismatchError
from vidsearch.formats.shard import shard_schema
from vidsearch.index import FaissClipIndex, GpuPolicy, OpenOptions, SearchFilter, Tuning
from vidsearch.index.build import BuildOptions, build_from_parquet
from vidsearch.index.parquet import (
    ShardRows,
    iter_rows,
    read_sample,
    scan_shards,
    shard_table,
    write_shard,
)

from .helpers import brute_force, clustered, make_records

DIM = 16


def rows(start: int, count: int, vectors: np.ndarray, model: str = "viclip-b16") -> ShardRows:
    return ShardRows(
        clip_ids=[f"c{i}" for i in range(start, start + count)],
        video_ids=[f"v{i // 10}" for i in range(start, start + count)],
        uris=[f"s3://bucket/v{i // 10}.mp4" for i in range(start, start + count)],
        start_s=np.array([2.0 * (i % 10) for i in range(start, start + count)]),
        end_s=np.array([2.0 * (i % 10) + 2.0 for i in range(start, start + count)]),
        models=[model] * count,
        vectors=vectors,
        preprocess=["pp:1"] * count,
    )


@pytest.fixture
def shard_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Three shards (one float16) of 700 clips in all; shard rows are written in groups of 16,384."""
    vectors = clustered(700, DIM, seed=1)
    source = tmp_path / "shards"
    source.mkdir()
    write_shard(source / "part-0.parquet", shard_table(rows(0, 300, vectors[:300]), model_checksum="sha:1"))
    write_shard(
        source / "part-1.parquet", shard_table(rows(300, 250, vectors[300:550]), model_checksum="sha:1")
    )
    half = shard_table(rows(550, 150, vectors[550:]), float16=True, model_checksum="sha:1")
    write_shard(source / "part-2.parquet", half)
    vectors[550:] = vectors[550:].astype(np.float16).astype(np.float32)
    return source, vectors


def test_schema_is_the_documented_one() -> None:
    schema = shard_schema(512)
    assert schema.names == [
        "clip_id",
        "video_id",
        "uri",
        "start_s",
        "end_s",
        "embedding",
        "model",
        "preprocess",
    ]
    assert schema.field("embedding").type == pa.list_(pa.field("item", pa.float32(), nullable=False), 512)
    assert shard_schema(8, float16=True).field("embedding").type.value_type == pa.float16()
    assert schema.metadata[b"vidsearch.format"] == b"clip-embeddings/1"


def test_scan_reads_footers_and_batches_stay_bounded(shard_dir: tuple[Path, np.ndarray]) -> None:
    source, vectors = shard_dir
    shards = scan_shards(source)
    assert (shards.rows, shards.dim, shards.model_checksum) == (700, DIM, "sha:1")
    seen = []
    for _, batch in iter_rows(shards, batch_rows=64):
        assert len(batch) <= 64
        seen.extend(batch.clip_ids)
        first = int(batch.clip_ids[0][1:])
        np.testing.assert_allclose(batch.vectors, vectors[first : first + len(batch)], atol=1e-3)
    assert seen == [f"c{i}" for i in range(700)]


def test_records_carry_model_version_and_preprocess_hash(shard_dir: tuple[Path, np.ndarray]) -> None:
    _, batch = next(iter_rows(scan_shards(shard_dir[0]), batch_rows=2))
    record = batch.records(model_version="sha:1")[0]
    assert (record.clip_id, record.video_id, record.start_s, record.end_s) == ("c0", "v0", 0.0, 2.0)
    assert (record.model, record.model_version, record.attributes) == (
        "viclip-b16",
        "sha:1",
        {"preprocess": "pp:1"},
    )


def test_training_sample_holds_real_rows(shard_dir: tuple[Path, np.ndarray]) -> None:
    source, vectors = shard_dir
    sample = read_sample(scan_shards(source), 100, seed=3)
    assert sample.shape == (100, DIM)
    nearest = (sample @ vectors.T).max(axis=1)
    assert np.all(nearest > 0.999), "every sampled row is one of the shard rows"
    assert len({row.tobytes() for row in sample}) == 100, "drawn without replacement"


def test_wrong_schemas_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    pq.write_table(pa.table({"clip_id": ["c"], "video_id": ["v"]}), tmp_path / "a" / "x.parquet")
    with pytest.raises(IndexFormatError, match="columns missing"):
        scan_shards(tmp_path / "a")

    (tmp_path / "b").mkdir()
    table = shard_table(rows(0, 2, clustered(2, DIM, seed=2)))
    table = table.set_column(3, "start_s", pa.array([1, 2], pa.int64()))
    pq.write_table(table, tmp_path / "b" / "x.parquet")
    with pytest.raises(IndexFormatError, match="start_s is int64, expected float64"):
        scan_shards(tmp_path / "b")

    (tmp_path / "c").mkdir()
    write_shard(tmp_path / "c" / "p0.parquet", shard_table(rows(0, 2, clustered(2, 8, seed=2))))
    write_shard(tmp_path / "c" / "p1.parquet", shard_table(rows(2, 2, clustered(2, 16, seed=2))))
    with pytest.raises(IndexFormatError, match=r"dimension \[8, 16\]"):
        scan_shards(tmp_path / "c")

    (tmp_path / "d").mkdir()
    with pytest.raises(IndexFormatError, match=r"no \.parquet"):
        scan_shards(tmp_path / "d")


def test_build_gives_an_exact_index(shard_dir: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    source, vectors = shard_dir
    stats = build_from_parquet(source, tmp_path / "index", BuildOptions(batch_rows=128, gpu=GpuPolicy.NEVER))
    assert (stats.clips, stats.videos, stats.index_type, stats.model) == (700, 70, "Flat", "viclip-b16")
    assert stats.model_checksum == "sha:1"
    queries = clustered(4, DIM, seed=5)
    records = make_records(700)  # same ids and videos as the shards
    expected = brute_force(records, vectors, queries, 10)
    with FaissClipIndex.open(tmp_path / "index", OpenOptions(read_only=True)) as index:
        hits = index.search_hits(queries, 10, SearchFilter(), Tuning())
    assert [[h.clip.clip_id for h in row] for row in hits] == [[c for c, _ in row] for row in expected]


def test_build_trains_ivf_on_a_sample(shard_dir: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    source, _ = shard_dir
    options = BuildOptions(factory="IVF8,SQ8", gpu=GpuPolicy.NEVER)
    stats = build_from_parquet(source, tmp_path / "index", options)
    assert stats.index_type == "IVF8,SQ8"
    assert stats.params["train_size"] == 700
    assert stats.clips == 700


def test_build_refuses_mixed_models(tmp_path: Path) -> None:
    source = tmp_path / "shards"
    source.mkdir()
    write_shard(source / "p0.parquet", shard_table(rows(0, 5, clustered(5, DIM, seed=1))))
    write_shard(source / "p1.parquet", shard_table(rows(5, 5, clustered(5, DIM, seed=2), model="viclip-l14")))
    with pytest.raises(IndexMismatchError, match="'viclip-l14' embeddings among 'viclip-b16'"):
        build_from_parquet(source, tmp_path / "index", BuildOptions(gpu=GpuPolicy.NEVER))
    with pytest.raises(IndexMismatchError, match="expected 'other'"):
        build_from_parquet(source, tmp_path / "index", BuildOptions(expect_model="other"))
    assert not (tmp_path / "index").exists(), "a failed build writes nothing"


def test_build_refuses_duplicate_clip_ids(tmp_path: Path) -> None:
    source = tmp_path / "shards"
    source.mkdir()
    write_shard(source / "p0.parquet", shard_table(rows(0, 5, clustered(5, DIM, seed=1))))
    write_shard(source / "p1.parquet", shard_table(rows(3, 5, clustered(5, DIM, seed=2))))
    with pytest.raises(DuplicateClipError, match="c3"):
        build_from_parquet(source, tmp_path / "index", BuildOptions(gpu=GpuPolicy.NEVER))
