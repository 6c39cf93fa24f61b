"""`vidsearch index build --backend milvus`: a Milvus collection from the Parquet shards of `vidsearch embed`.

Rows stream in batches (memory holds one batch); the collection is created with its vector index, so
Milvus indexes each segment as it seals; the build ends when every row is flushed and indexed.
An existing collection is refused unless `replace` is set, which drops it first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidsearch.index.base import IndexStats
from vidsearch.index.build import batches_of_one_model, shards_model
from vidsearch.index.milvus.config import MilvusIndexSpec, MilvusTarget
from vidsearch.index.milvus.index import MilvusClipIndex, MilvusCollectionConfig
from vidsearch.index.parquet import scan_shards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MilvusBuildOptions:
    """`batch_rows` rows per insert call (one gRPC message: keep it well under 64 MB)."""

    index: MilvusIndexSpec = field(default_factory=MilvusIndexSpec)
    batch_rows: int = 10_000
    expect_model: str | None = None
    replace: bool = False
    shards: int = 1
    partitions: int = 1


def build_collection_from_parquet(
    source: Path, target: MilvusTarget, options: MilvusBuildOptions | None = None
) -> IndexStats:
    """Fill a new collection with every shard under `source`; returns its stats."""
    opts = options or MilvusBuildOptions()
    shards = scan_shards(source)
    model = shards_model(shards, source, opts.expect_model)
    if opts.replace:
        MilvusClipIndex.remove(target)
    config = MilvusCollectionConfig(
        shards.dim, model, shards.model_checksum, opts.index, opts.shards, opts.partitions
    )
    started = time.perf_counter()
    with MilvusClipIndex.create(target, config) as index:
        log.info("building %s (%s) from %d shards, %d clips", target.address, opts.index.index_type,
                 len(shards.files), shards.rows)  # fmt: skip
        added = 0
        for rows in batches_of_one_model(shards, model, opts.batch_rows):
            index.add(rows.records(model_version=shards.model_checksum), rows.vectors)
            added += len(rows)
            log.info("inserted %d / %d clips (%.0f s)", added, shards.rows, time.perf_counter() - started)
        index.finish_bulk_load()
        return index.stats()
