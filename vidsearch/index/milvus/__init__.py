"""The Milvus backend of the clip index: `MilvusClipIndex` over pymilvus, and a local server for tests."""

from vidsearch.index.milvus.config import MilvusIndexSpec, MilvusTarget, is_milvus_address
from vidsearch.index.milvus.index import MilvusClipIndex, MilvusCollectionConfig
from vidsearch.index.milvus.local_server import LocalMilvus, LocalMilvusError

__all__ = [
    "LocalMilvus",
    "LocalMilvusError",
    "MilvusClipIndex",
    "MilvusCollectionConfig",
    "MilvusIndexSpec",
    "MilvusTarget",
    "is_milvus_address",
]
