"""Which `ClipIndex` a location holds, opened for a given embedding model: what a server calls.

The server never names a backend: it asks for the index at a location, for the model its runtime
serves, and gets a `ClipIndex`. Versioning, durability and the on-disk layout stay behind that
interface. A location is recognised by its layout:

    <dir>/CURRENT                 one FAISS index directory (`FaissClipIndex`)
    <dir>/shard-*/CURRENT         FAISS index directories searched as one (`ShardedClipIndex`)
    MilvusTarget                  a Milvus collection (`MilvusClipIndex`; Milvus keeps it durable),
                                  parsed from milvus://HOST:PORT/NAME with its token and options

A new backend adds its layout here. An index must hold vectors of the model served: same name and
dimension, and the same weights when the index records a checksum; anything else is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vidsearch.errors import IndexMismatchError
from vidsearch.index.base import ClipIndex, GpuPolicy
from vidsearch.index.faiss_index import FaissClipIndex, IndexConfig
from vidsearch.index.faiss_state import OpenOptions
from vidsearch.index.milvus import MilvusClipIndex, MilvusCollectionConfig, MilvusIndexSpec, MilvusTarget
from vidsearch.index.persistence import is_index_directory
from vidsearch.index.shards import ShardedClipIndex

log = logging.getLogger(__name__)

NEW_INDEX_FACTORY = "Flat"  # exact, and needs no training: what an index filled by Ingest starts as
SHARD_PREFIX = "shard-"


@dataclass(frozen=True)
class ModelIdentity:
    """The embedding model an index must hold vectors of; an empty checksum matches any weights."""

    name: str
    dim: int
    checksum: str = ""


def shard_directories(location: Path) -> list[Path]:
    """The shard index directories of a sharded location, in name order (empty if it is not one)."""
    if not location.is_dir() or is_index_directory(location):
        return []
    return sorted(p for p in location.iterdir() if p.name.startswith(SHARD_PREFIX) and is_index_directory(p))


def open_index(location: Path | MilvusTarget, model: ModelIdentity, *, create: bool, durable: bool,
               gpu: GpuPolicy = GpuPolicy.AUTO, verify_max_bytes: int | None = None,
               milvus_index: MilvusIndexSpec | None = None) -> ClipIndex:
    """The index at `location` for `model`; `create` starts an empty one where there is none.

    `durable`: each change is on disk when the call that made it returns; otherwise changes live in
    memory only. The directory (or each shard's) is locked for this process while the index is open.
    `gpu` places FAISS indexes (a Milvus server places its own). A snapshot above `verify_max_bytes`
    has its digests checked in the background (`ready()` False until they pass). `milvus_index` is
    the vector index of a Milvus collection `create` makes (None: HNSW with its defaults).
    """
    if isinstance(location, MilvusTarget):
        return _open_milvus(location, model, create, milvus_index)
    options = OpenOptions(expect_model=model.name, expect_dim=model.dim, log_changes=durable, gpu=gpu,
                          verify_max_bytes=verify_max_bytes, verify_in_background=True)
    shards = shard_directories(location)
    index: ClipIndex
    if shards:
        index = ShardedClipIndex.open(shards, options)
    elif is_index_directory(location):
        index = FaissClipIndex.open(location, options)
    elif create:
        log.info("starting an empty %s index at %s for %s", NEW_INDEX_FACTORY, location, model.name)
        config = IndexConfig(model.dim, model.name, model.checksum, NEW_INDEX_FACTORY, gpu=gpu)
        if not durable:
            return FaissClipIndex.create(config)  # nothing is written: the index lives in memory
        with FaissClipIndex.create(config) as new:
            new.save(location)
        index = FaissClipIndex.open(location, options)
    else:
        raise IndexMismatchError(f"{location} holds no index (build one, or allow creating it)")
    recorded = index.stats().model_checksum
    if recorded and recorded != model.checksum:
        index.close()
        raise IndexMismatchError(f"{location} was built with weights {recorded}; the runtime serves "
                                 f"{model.checksum}: rebuild the index with this model")
    return index


def _open_milvus(target: MilvusTarget, model: ModelIdentity, create: bool,
                 spec: MilvusIndexSpec | None) -> ClipIndex:
    """A Milvus collection for `model`; `create` makes an empty one with index `spec` where there is none.

    An existing collection keeps the index it was built with: a `spec` that differs is reported, so
    a changed setting does not look as if it took effect.
    """
    if not create:
        return MilvusClipIndex.open(target, expect_dim=model.dim, expect_model=model.name,
                                    expect_model_checksum=model.checksum or None)
    config = MilvusCollectionConfig(model.dim, model.name, model.checksum, index=spec or MilvusIndexSpec())
    index = MilvusClipIndex.open_or_create(target, config)
    if spec is not None and index.index_spec != spec.resolved():
        built = index.index_spec
        log.warning("%s exists with %s %s / %s; the configured %s %s / %s applies only to a collection "
                    "the server creates (rebuild with `vidsearch index build --backend milvus` to change "
                    "it)", target.address, built.index_type, dict(built.build), dict(built.search),
                    spec.index_type, spec.build, spec.search)
    return index
