"""Filtered FAISS search: the permitted clips' own vectors, ID selectors inside FAISS, or over-fetching.

The filter itself is evaluated in SQLite (`MetadataStore.filter_ids`); this module searches among the
permitted ids (minus the tombstones of indexes that cannot delete). A selective filter is answered from
the permitted vectors directly; otherwise an `IDSelector` makes FAISS skip excluded ids while it scans;
index types that refuse selectors are searched wider and wider until every query has k permitted hits
or the whole index was seen. All three are exact on exact (Flat) indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import faiss
import numpy as np

from vidsearch.index.base import Tuning

log = logging.getLogger(__name__)

# faiss 1.15's bundled type stubs lack several search-parameter classes and their keyword arguments.
_faiss: Any = faiss

BLAS_MIN_QUERIES = 16
"""Batches of at least this many queries compute exact distances with BLAS, smaller ones with FAISS's
SIMD kernels. faiss 1.15 switches to BLAS once queries × dim reaches `distance_compute_blas_threshold`
(default 128,000: 250 queries at 512-d). Measured at 512-d over 4,000 vectors (an IVF coarse quantizer):
BLAS halves the time per query in batches of 16, but makes a single query 4.6 times slower."""

SELECTIVE_MAX = 16_384
"""Filters that let at most this many clips through are answered from those clips' own vectors."""

_BITMAP_MIN_IDS = 4096
_BITMAP_MAX_BYTES = 64 << 20
_OVERFETCH_GROWTH = 4


@dataclass(frozen=True)
class Selection:
    """The ids a search may return: `allowed` (None: all) minus `excluded`, both sorted int64."""

    allowed: np.ndarray | None
    excluded: np.ndarray

    def permits(self, labels: np.ndarray) -> np.ndarray:
        """Boolean mask of the labels (any shape; -1 is FAISS padding) that may be returned."""
        mask = labels >= 0
        if self.allowed is not None:
            mask &= np.isin(labels, self.allowed, assume_unique=False)
        if self.excluded.size:
            mask &= ~np.isin(labels, self.excluded)
        return mask


class _SelectorHolder:
    """A FAISS selector and every object it points into: SWIG selectors do not own what they reference."""

    def __init__(self, selection: Selection) -> None:
        self.keep: list[Any] = []
        parts = []
        if selection.allowed is not None:
            parts.append(self._members(selection.allowed))
        if selection.excluded.size:
            parts.append(self._hold(faiss.IDSelectorNot(self._members(selection.excluded))))
        self.selector = parts[0] if len(parts) == 1 else self._hold(faiss.IDSelectorAnd(*parts))

    def _hold(self, obj: Any) -> Any:
        self.keep.append(obj)
        return obj

    def _members(self, ids: np.ndarray) -> Any:
        top = int(ids[-1]) if ids.size else 0
        if ids.size >= _BITMAP_MIN_IDS and (top + 8) // 8 <= _BITMAP_MAX_BYTES:
            bits = np.zeros(top + 1, dtype=bool)
            bits[ids] = True
            bitmap = self._hold(np.packbits(bits, bitorder="little"))
            return self._hold(faiss.IDSelectorBitmap(bitmap.size, faiss.swig_ptr(bitmap)))
        return self._hold(faiss.IDSelectorBatch(ids))


def _leaf_parameters(index: Any, selector: Any, tuning: Tuning) -> Any | None:
    """Parameters for an index that searches by itself; None for a type we cannot pass them to."""
    kwargs: dict[str, Any] = {} if selector is None else {"sel": selector}
    if isinstance(index, faiss.IndexIVF):
        return _faiss.SearchParametersIVF(nprobe=tuning.nprobe or index.nprobe, **kwargs)
    if isinstance(index, faiss.IndexHNSW):
        return _faiss.SearchParametersHNSW(efSearch=tuning.ef_search or index.hnsw.efSearch, **kwargs)
    if isinstance(index, faiss.IndexFlatCodes) and not isinstance(index, faiss.IndexPQ):
        return faiss.SearchParameters(**kwargs)
    return None


@dataclass
class _Parameters:
    """FAISS search parameters, with the inner objects they point to kept alive."""

    params: Any
    keep: tuple[Any, ...] = ()


def search_parameters(index: Any, selector: Any, tuning: Tuning) -> _Parameters | None:
    """Per-query parameters for the index structures vidsearch builds; None for any other structure.

    An ID map translates the selector to its inner ids by itself; a pre-transform (OPQ, PCA) takes
    its inner index's parameters.
    """
    node = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(node, faiss.IndexPreTransform):
        inner = _leaf_parameters(faiss.downcast_index(node.index), selector, tuning)
        if inner is None:
            return None
        return _Parameters(_faiss.SearchParametersPreTransform(index_params=inner), keep=(inner,))
    leaf = _leaf_parameters(node, selector, tuning)
    return None if leaf is None else _Parameters(leaf)


def _probe_everything(index: Any, tuning: Tuning) -> Tuning:
    """Tuning that visits every inverted list of an IVF index (unchanged for other types)."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return tuning
    return replace(tuning, nprobe=int(ivf.nlist))


@contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Run FAISS on n OpenMP threads inside the block (None: unchanged), then restore.

    OpenMP keeps the thread count per calling thread, so concurrent searches do not disturb each other.
    """
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class FilteredSearcher:
    """Searches one FAISS index, remembering which of the filtering strategies it supports.

    A selective filter (at most `selective_max` clips pass) is answered exactly from the permitted
    vectors themselves where the index can return them, else by probing every inverted list: an
    approximate index would otherwise miss most of a small allowed set (think "search this video").
    """

    index: Any
    selectors_supported: bool = True
    reconstructs: bool = True
    selective_max: int = SELECTIVE_MAX

    def search(
        self, queries: np.ndarray, k: int, selection: Selection | None, tuning: Tuning
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, labels) per query among the permitted ids; missing slots hold label -1."""
        faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES * queries.shape[1]
        with omp_threads(1 if queries.shape[0] == 1 else None):
            if selection is None:
                return self._raw(queries, k, None, tuning)
            if selection.allowed is not None and selection.allowed.size <= self.selective_max:
                exact = self._subset(queries, k, selection.allowed)
                if exact is not None:
                    return exact
                tuning = _probe_everything(self.index, tuning)
            if self.selectors_supported:
                holder = _SelectorHolder(selection)
                try:
                    scores, labels = self._raw(queries, k, holder.selector, tuning)
                except RuntimeError as exc:
                    log.info("index refuses ID selectors (%s); filtering by over-fetching", exc)
                    self.selectors_supported = False
                else:
                    return _compact(scores, labels, selection.permits(labels), k)
            return self._overfetch(queries, k, selection, tuning)

    def _subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact top-k against the permitted vectors; None if the index cannot return its vectors."""
        if not self.reconstructs:
            return None
        try:
            vectors = self.index.reconstruct_batch(allowed)
        except RuntimeError as exc:
            log.info("index cannot return its vectors (%s); selective filters probe every list", exc)
            self.reconstructs = False
            return None
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        permitted = np.ones(order.shape, dtype=bool)
        return _compact(np.take_along_axis(scores, order, 1), allowed[order], permitted, k)

    def _raw(
        self, queries: np.ndarray, k: int, selector: Any, tuning: Tuning
    ) -> tuple[np.ndarray, np.ndarray]:
        wrapped = search_parameters(self.index, selector, tuning)
        if wrapped is None:
            if selector is not None:
                raise RuntimeError(f"no search parameters for {type(self.index).__name__}")
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=wrapped.params)

    def _overfetch(
        self, queries: np.ndarray, k: int, selection: Selection, tuning: Tuning
    ) -> tuple[np.ndarray, np.ndarray]:
        total = int(self.index.ntotal)
        if selection.allowed is None:
            fetch = k + int(selection.excluded.size)
        else:
            share = max(selection.allowed.size, 1) / max(total, 1)
            fetch = int(k / share * 1.5) + 16
        while True:
            fetch = max(1, min(fetch, total))
            scores, labels = self._raw(queries, fetch, None, tuning)
            permitted = selection.permits(labels)
            exhausted = (labels < 0).any(axis=1) | (fetch >= total)
            if bool(((permitted.sum(axis=1) >= k) | exhausted).all()):
                return _compact(scores, labels, permitted, k)
            fetch *= _OVERFETCH_GROWTH


def _compact(
    scores: np.ndarray, labels: np.ndarray, permitted: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's first k permitted hits (rows are sorted best first); pad with -1."""
    out_scores = np.full((labels.shape[0], k), -np.inf, dtype=np.float32)
    out_labels = np.full((labels.shape[0], k), -1, dtype=np.int64)
    for row in range(labels.shape[0]):
        keep = np.flatnonzero(permitted[row])[:k]
        out_scores[row, : keep.size] = scores[row, keep]
        out_labels[row, : keep.size] = labels[row, keep]
    return out_scores, out_labels
