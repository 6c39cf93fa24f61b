"""Test data for the clip index: clustered unit vectors, clip records, and a brute-force reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vidsearch.index import ClipRecord, FaissClipIndex, GpuPolicy, Hit, IndexConfig, SearchFilter, TimeRange
from vidsearch.index.parquet import ShardRows, shard_table, write_shard

MODEL = "test-model"
N, DIM = 600, 24
"""Size of the search tests' clip set."""
Data = tuple[list[ClipRecord], np.ndarray, np.ndarray]
CLIPS_PER_VIDEO = 10
TAGS = ("red", "green", "blue")


def clustered(n: int, dim: int, seed: int, clusters: int = 8) -> np.ndarray:
    """Unit vectors around a few centres (like embeddings), all distinct."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def make_records(n: int, *, start: int = 0, model: str = MODEL) -> list[ClipRecord]:
    """Clips c{i} of videos v{i // 10}, 2 s long, tagged by i % 3 (and "even" on even i)."""
    records = []
    for i in range(start, start + n):
        tags = {TAGS[i % 3]} | ({"even"} if i % 2 == 0 else set())
        records.append(
            ClipRecord(
                clip_id=f"c{i}",
                video_id=f"v{i // CLIPS_PER_VIDEO}",
                uri=f"file:///videos/v{i // CLIPS_PER_VIDEO}.mp4",
                start_s=2.0 * (i % CLIPS_PER_VIDEO),
                end_s=2.0 * (i % CLIPS_PER_VIDEO) + 2.0,
                model=model,
                model_version="sha256:abc",
                tags=frozenset(tags),
                attributes={"i": i},
            )
        )
    return records


def build(
    records: list[ClipRecord], vectors: np.ndarray, factory: str = "Flat", model: str = MODEL
) -> FaissClipIndex:
    index = FaissClipIndex.create(
        IndexConfig(dim=vectors.shape[1], model=model, factory=factory, gpu=GpuPolicy.NEVER)
    )
    if not index.is_trained:
        index.train(vectors)
    index.add(records, vectors)
    return index


def brute_force(
    records: list[ClipRecord],
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    keep: Callable[[ClipRecord], bool] = lambda _: True,
) -> list[list[tuple[str, float]]]:
    """Exact top-k (clip id, cosine) among the records that `keep` accepts."""
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = unit_q @ vectors.T
    allowed = np.array([keep(r) for r in records])
    out = []
    for row in scores:
        candidates = np.flatnonzero(allowed)
        order = candidates[np.argsort(-row[candidates], kind="stable")][:k]
        out.append([(records[i].clip_id, float(row[i])) for i in order])
    return out


FILTERS: dict[str, tuple[SearchFilter, Callable[[ClipRecord], bool]]] = {
    "videos": (
        SearchFilter(video_ids=frozenset({"v3", "v17", "v42"})),
        lambda r: r.video_id in {"v3", "v17", "v42"},
    ),
    "tags": (SearchFilter(tags=frozenset({"red", "blue"})), lambda r: bool(r.tags & {"red", "blue"})),
    "time": (SearchFilter(time_range=TimeRange(5.0, 9.0)), lambda r: r.start_s <= 9.0 and r.end_s > 5.0),
    "point-in-time": (SearchFilter(time_range=TimeRange(4.0, 4.0)), lambda r: r.start_s <= 4.0 < r.end_s),
    "combined": (
        SearchFilter(
            video_ids=frozenset(f"v{i}" for i in range(0, 60, 2)),
            tags=frozenset({"even"}),
            time_range=TimeRange(0.0, 6.0),
        ),
        lambda r: int(r.video_id[1:]) % 2 == 0 and "even" in r.tags and r.start_s <= 6.0 and r.end_s > 0.0,
    ),
}
"""Filters of the search tests, each with the predicate a brute-force reference applies."""


def ids_scores(hits: list[Hit]) -> list[tuple[str, float]]:
    return [(h.clip.clip_id, h.score) for h in hits]


def assert_same(actual: list[list[tuple[str, float]]], expected: list[list[tuple[str, float]]]) -> None:
    """Same clips in the same order, scores equal to float32 precision."""
    for got, want in zip(actual, expected, strict=True):
        assert [c for c, _ in got] == [c for c, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def search_data() -> Data:
    """The search tests' clips, their vectors, and 7 queries."""
    return make_records(N), clustered(N, DIM, seed=1), clustered(7, DIM, seed=2)


def write_shards(directory: Path, count: int = 120, dim: int = 16, model: str = "viclip-b16") -> None:
    """One Parquet shard as `vidsearch embed` writes it: `count` clips of 6 per video, 4 s each."""
    directory.mkdir(parents=True)
    ids = range(count)
    rows = ShardRows(
        clip_ids=[f"c{i}" for i in ids],
        video_ids=[f"v{i // 6}" for i in ids],
        uris=[f"file:///v{i // 6}.mp4" for i in ids],
        start_s=np.array([4.0 * (i % 6) for i in ids]),
        end_s=np.array([4.0 * (i % 6) + 4.0 for i in ids]),
        models=[model] * count,
        vectors=clustered(count, dim, seed=1),
    )
    write_shard(directory / "part-00000.parquet", shard_table(rows, model_checksum="sha256:0123"))
