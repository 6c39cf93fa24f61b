"""The FAISS side of filtering: selectors, search parameters, thread settings."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vidsearch.index import Tuning
from vidsearch.index.factory import new_index
from vidsearch.index.filters import (
    BLAS_MIN_QUERIES,
    FilteredSearcher,
    Selection,
    _SelectorHolder,
    omp_threads,
    search_parameters,
)


@pytest.mark.parametrize("size", [50, 6000], ids=["hash-set", "bitmap"])
@pytest.mark.parametrize("with_excluded", [False, True])
def test_selector_membership_matches_the_selection(size: int, with_excluded: bool) -> None:
    rng = np.random.default_rng(size)
    allowed = np.sort(rng.choice(20_000, size=size, replace=False)).astype(np.int64)
    excluded = allowed[::7].copy() if with_excluded else np.empty(0, np.int64)
    selection = Selection(allowed=allowed, excluded=excluded)
    holder = _SelectorHolder(selection)
    candidates = np.arange(-1, 20_100, dtype=np.int64)
    members = np.array([holder.selector.is_member(int(i)) for i in candidates[1:]])
    expected = selection.permits(candidates)
    assert not expected[0], "-1 is FAISS padding, never a hit"
    np.testing.assert_array_equal(members, expected[1:])


def test_excluded_only_selection() -> None:
    selection = Selection(allowed=None, excluded=np.array([3, 5], np.int64))
    holder = _SelectorHolder(selection)
    assert [holder.selector.is_member(i) for i in range(7)] == [True, True, True, False, True, False, True]


def test_parameters_follow_the_index_structure() -> None:
    sel = faiss.IDSelectorRange(0, 10)
    hnsw = search_parameters(new_index(8, "HNSW8,Flat"), sel, Tuning(ef_search=77))
    assert hnsw is not None
    assert isinstance(hnsw.params, faiss.SearchParametersHNSW)
    assert hnsw.params.efSearch == 77

    ivf_index = new_index(8, "IVF4,Flat")
    ivf_index.nprobe = 3
    ivf = search_parameters(ivf_index, None, Tuning())
    assert ivf is not None
    assert ivf.params.nprobe == 3, "the index's own default when the query sets none"

    wrapped = search_parameters(new_index(8, "PCA4,IVF4,Flat"), sel, Tuning(nprobe=2))
    assert wrapped is not None
    assert isinstance(wrapped.params, faiss.SearchParametersPreTransform)
    assert wrapped.keep[0].nprobe == 2

    assert search_parameters(new_index(8, "PQ2x4"), sel, Tuning()) is None, "IndexPQ takes no selector"


def test_omp_threads_restores_the_previous_count() -> None:
    before = faiss.omp_get_max_threads()
    with omp_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("dim", [8, 512])
def test_only_batches_use_blas(dim: int) -> None:
    """faiss takes the BLAS path when queries × dim reaches the threshold: a batch of BLAS_MIN_QUERIES
    must, a single query (4.6 times slower there at 512-d) must not."""
    index = new_index(dim, "Flat")
    index.add_with_ids(np.eye(dim, dtype=np.float32), np.arange(dim, dtype=np.int64))
    FilteredSearcher(index).search(np.eye(1, dim, dtype=np.float32), 1, None, Tuning())
    threshold = faiss.cvar.distance_compute_blas_threshold
    assert 1 * dim < threshold <= BLAS_MIN_QUERIES * dim
