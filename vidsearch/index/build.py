"""`vidsearch index build`: an index directory from the Parquet shards of a batch embedding job.

Two streaming passes at most: a random training sample (for IVF/PQ types), then the rows in batches.
Memory holds the index being built, one batch, and the training sample, never the whole shard set.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vidsearch.errors import IndexMismatchError
from vidsearch.index.base import ClipIndex, GpuPolicy, IndexStats
from vidsearch.index.factory import plan_index, runs_on_gpu
from vidsearch.index.faiss_index import FaissClipIndex, IndexConfig
from vidsearch.index.parquet import ShardRows, ShardSet, iter_rows, read_sample, scan_shards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """`factory` None picks the index type by size; `expect_model` refuses shards of another model."""

    factory: str | None = None
    batch_rows: int = 65_536
    gpu: GpuPolicy = GpuPolicy.AUTO
    seed: int = 0
    expect_model: str | None = None


def _first_model(shards: ShardSet) -> str:
    for _, rows in iter_rows(shards, batch_rows=1):
        return rows.models[0]
    raise AssertionError("scan_shards guarantees at least one row")


def shards_model(shards: ShardSet, source: Path, expect_model: str | None) -> str:
    """The embedding model of the shards, refused (IndexMismatchError) if it is not `expect_model`."""
    model = _first_model(shards)
    if expect_model is not None and model != expect_model:
        raise IndexMismatchError(f"{source}: shards hold {model!r} embeddings, expected {expect_model!r}")
    return model


def batches_of_one_model(shards: ShardSet, model: str, batch_rows: int) -> Iterator[ShardRows]:
    """The shards' rows in batches, refusing (IndexMismatchError) any row of another model."""
    for path, rows in iter_rows(shards, batch_rows):
        odd = next((m for m in rows.models if m != model), None)
        if odd is not None:
            raise IndexMismatchError(f"{path}: holds {odd!r} embeddings among {model!r} ones")
        yield rows


def add_shard_rows(index: ClipIndex, shards: ShardSet, model: str, batch_rows: int) -> None:
    """Add every row of the shards to `index`, a batch at a time, logging the progress."""
    started = time.perf_counter()
    added = 0
    for rows in batches_of_one_model(shards, model, batch_rows):
        index.add(rows.records(model_version=shards.model_checksum), rows.vectors)
        added += len(rows)
        log.info("added %d / %d clips (%.0f s)", added, shards.rows, time.perf_counter() - started)


def build_from_parquet(source: Path, dest: Path, options: BuildOptions | None = None) -> IndexStats:
    """Build an index from every shard under `source` and save it atomically into `dest` (whose writer
    lock it holds throughout, with its scratch copy of the metadata in `dest/.work`)."""
    opts = options or BuildOptions()
    shards = scan_shards(source)
    model = shards_model(shards, source, opts.expect_model)
    plan = plan_index(shards.rows, shards.dim, opts.factory, gpu=runs_on_gpu(opts.gpu))
    log.info(
        "building %s over %d clips (%d-d, %s) from %d shards",
        plan.factory,
        shards.rows,
        shards.dim,
        model,
        len(shards.files),
    )
    config = IndexConfig(
        dim=shards.dim,
        model=model,
        model_checksum=shards.model_checksum,
        factory=plan.factory,
        expected_clips=shards.rows,
        gpu=opts.gpu,
    )
    fresh = not dest.exists()
    try:
        return _fill(FaissClipIndex.create(config, dest), shards, model, opts, plan.train_size)
    except BaseException:
        if fresh:  # a failed build leaves no directory behind (the lock and scratch made it)
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _fill(
    index: FaissClipIndex, shards: ShardSet, model: str, opts: BuildOptions, train_size: int
) -> IndexStats:
    """Train, add every row and save the index into the directory it was created for."""
    with index:
        if not index.is_trained:
            index.train(read_sample(shards, train_size, opts.seed))
        add_shard_rows(index, shards, model, opts.batch_rows)
        index.save()
        return index.stats()
