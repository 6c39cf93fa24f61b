"""`vidsearch index build --backend milvus`: a Milvus collection from the Parquet shards of `vidsearch embed`.

Rows stream in batches (memory holds one batch) into a new version of the collection, created with its
vector index so that Milvus indexes each segment as it seals; once every row is flushed, indexed and
loaded, the collection's name switches to it (`versions`). An existing collection is refused unless
`replace` is set, and is replaced only by one of the same model, dimension and weights.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from vidsearch.errors import ClipIndexError, IndexMismatchError, VidsearchError
from vidsearch.index.base import IndexStats
from vidsearch.index.build import add_shard_rows, shards_model
from vidsearch.index.milvus import versions
from vidsearch.index.milvus.calls import translate
from vidsearch.index.milvus.config import MilvusIndexSpec, MilvusTarget
from vidsearch.index.milvus.index import MilvusClipIndex, MilvusCollectionConfig
from vidsearch.index.parquet import scan_shards

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MilvusBuildOptions:
    """`batch_rows` rows per insert call (one gRPC message: keep it well under 64 MB); `replicas` None:
    as many as the collection it replaces has, else 1 (see `MilvusCollectionConfig`)."""

    index: MilvusIndexSpec = field(default_factory=MilvusIndexSpec)
    batch_rows: int = 10_000
    expect_model: str | None = None
    replace: bool = False
    shards: int = 1
    partitions: int = 1
    replicas: int | None = None


def build_collection_from_parquet(
    source: Path, target: MilvusTarget, options: MilvusBuildOptions | None = None
) -> IndexStats:
    """Fill a new version of the collection with every shard under `source`, then serve it under the
    target's name (`versions`); returns its stats. The name keeps answering from what it held until
    then, and keeps it if the build fails."""
    opts = options or MilvusBuildOptions()
    shards = scan_shards(source)
    model = shards_model(shards, source, opts.expect_model)
    replaced_replicas = _check_replaceable(target, opts.replace, shards.dim, model, shards.model_checksum)
    version = replace(target, collection=versions.version_name(target.collection))
    config = MilvusCollectionConfig(shards.dim, model, shards.model_checksum, opts.index, opts.shards,
                                    opts.partitions, opts.replicas or replaced_replicas)  # fmt: skip
    try:
        with MilvusClipIndex.create(version, config) as index:
            log.info("building %s as %s (%s) from %d shards, %d clips", target.address, version.collection,
                     opts.index.index_type, len(shards.files), shards.rows)  # fmt: skip
            add_shard_rows(index, shards, model, opts.batch_rows)
            index.finish_bulk_load()
    except BaseException:
        with contextlib.suppress(VidsearchError):
            MilvusClipIndex.remove(version)
        raise
    client = MilvusClipIndex.connect(target)
    try:
        name, new = target.collection, version.collection
        dropped = translate(target, "serve the new collection", lambda: versions.publish(client, name, new))
    finally:
        client.close()
    log.info("%s now serves %s; dropped %s", target.address, version.collection, dropped or "nothing")
    with MilvusClipIndex.open(target) as built:
        return built.stats()


def _check_replaceable(target: MilvusTarget, allowed: bool, dim: int, model: str, checksum: str) -> int:
    """Before any work: an existing collection is replaced only when asked, and only by one of the same
    model, dimension and weights (servers keep searching it by name with the model they started with).
    Returns how many replicas it has loaded (1 where there is none)."""
    if not MilvusClipIndex.exists(target):
        return 1
    if not allowed:
        raise ClipIndexError(f"{target.address} exists already: --replace builds its replacement and "
                             "switches to it when complete")  # fmt: skip
    try:
        with MilvusClipIndex.open(target, expect_dim=dim, expect_model=model,
                                  expect_model_checksum=checksum or None) as existing:  # fmt: skip
            return existing.replicas()
    except IndexMismatchError as exc:
        raise IndexMismatchError(f"{exc}: servers search it with their own model, so a collection is not "
                                 "replaced by one of another; build into a new collection name") from None
