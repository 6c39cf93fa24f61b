"""The index backends every contract test runs against: FAISS in-process, and a real Milvus server.

The Milvus server is the session's one (`milvus_server` in tests/conftest.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from vidsearch.index import ClipIndex, ClipRecord
from vidsearch.index.milvus import (
    LocalMilvus,
    MilvusClipIndex,
    MilvusCollectionConfig,
    MilvusIndexSpec,
    MilvusTarget,
)

from .helpers import MODEL, build

BACKENDS = ("faiss", "milvus")
BuildFn = Callable[[list[ClipRecord], np.ndarray], ClipIndex]
_names = itertools.count()


def milvus_collection(
    server: LocalMilvus, dim: int, model: str = MODEL, index_type: str = "FLAT"
) -> MilvusClipIndex:
    """A new collection with a name of its own on the session's server."""
    target = MilvusTarget(uri=server.uri, collection=f"test_{next(_names)}")
    config = MilvusCollectionConfig(dim=dim, model=model, index=MilvusIndexSpec(index_type))
    return MilvusClipIndex.create(target, config)


@pytest.fixture(params=BACKENDS, scope="module")
def make_index(request: pytest.FixtureRequest) -> Iterator[BuildFn]:
    """Builds an exact (FAISS Flat, Milvus FLAT) index of the given clips on the parametrised backend."""
    made: list[ClipIndex] = []

    def make(records: list[ClipRecord], vectors: np.ndarray) -> ClipIndex:
        index: ClipIndex
        if request.param == "faiss":
            index = build(records, vectors)
        else:
            index = milvus_collection(request.getfixturevalue("milvus_server"), vectors.shape[1])
            index.add(records, vectors)
        made.append(index)
        return index

    yield make
    for index in made:
        if isinstance(index, MilvusClipIndex):
            index.drop()
        index.close()
