"""Which FAISS index to build for a collection, how to train it, and which device it runs on.

The default is the most precise index that fits a memory budget: exact search (Flat) below ~200k
clips, where it is exact and fast enough; then an inverted file with float16 codes (recall@10 0.998 at
1M x 512 in `benchmarks/index.py`), 8-bit codes (0.977) once float16 would pass the budget, and 4-bit
product quantisation (far lower recall: shard instead where you can) once 8-bit would. Any FAISS
factory string may be given instead; whatever was chosen is recorded in the manifest.

For an index that will run on a GPU the choice keeps to types FAISS's GPU code serves well: Flat, and
IVF with float16 / 8-bit scalar codes or 8-bit PQ (the 4-bit fast-scan PQ and HNSW have no GPU version).
CAGRA is not chosen: with inner product it returned near-random neighbours on unit vectors on an H200
(recall@10 0.016); `benchmarks/gpu.py` measures it with L2 on unit vectors (the same ranking) instead.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import faiss

from vidsearch.errors import ConfigError, IndexDeviceError
from vidsearch.index.base import GpuPolicy

log = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 200_000
MEMORY_BUDGET_BYTES = 8 << 30
"""Vector codes of the default index type stay under this (ids and lists add about 10 %)."""
MAX_TRAIN_VECTORS = 1 << 20
_MIN_TRAIN_VECTORS = 65_536
_TRAIN_PER_LIST = 50
_DEFAULT_EF_SEARCH = 128
_IVF = re.compile(r"IVF(\d+)")


@dataclass(frozen=True)
class IndexPlan:
    """A FAISS factory string with the training sample size and default search parameters for it."""

    factory: str
    train_size: int
    params: dict[str, int] = field(default_factory=dict)


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: the power of two nearest 4·sqrt(n), within [256, 65536]."""
    target = 4.0 * math.sqrt(max(n, 1))
    return int(min(max(2 ** round(math.log2(target)), 256), 65_536))


def choose_factory(n: int, dim: int, gpu: bool = False) -> str:
    """The default factory string for n vectors of dimension dim (`gpu`: for an index on a GPU)."""
    if n < FLAT_MAX_VECTORS:
        return "Flat"
    nlist = ivf_lists(n)
    if n * dim * 2 <= MEMORY_BUDGET_BYTES:
        return f"IVF{nlist},SQfp16"
    if n * dim <= MEMORY_BUDGET_BYTES:
        return f"IVF{nlist},SQ8"
    subquantizers = max(1, dim // (8 if gpu else 4))
    while dim % subquantizers:
        subquantizers -= 1
    return f"IVF{nlist},PQ{subquantizers}" if gpu else f"IVF{nlist},PQ{subquantizers}x4fs"


def plan_index(n: int, dim: int, factory: str | None = None, gpu: bool = False) -> IndexPlan:
    """The plan for n vectors: the given factory string (or the default, for a GPU with `gpu`)."""
    chosen = factory or choose_factory(n, dim, gpu)
    probe = new_index(dim, chosen)
    params: dict[str, int] = {}
    match = _IVF.search(chosen)
    nlist = int(match.group(1)) if match else 0
    if nlist:
        params["nlist"] = nlist
        params["nprobe"] = max(16, nlist // 256)
    if "HNSW" in chosen:
        params["ef_search"] = _DEFAULT_EF_SEARCH
    train_size = 0
    if not probe.is_trained:
        wanted = max(_MIN_TRAIN_VECTORS, _TRAIN_PER_LIST * nlist)
        train_size = min(n, wanted, MAX_TRAIN_VECTORS)
    return IndexPlan(factory=chosen, train_size=train_size, params=params)


def new_index(dim: int, factory: str) -> Any:
    """An empty inner-product index that accepts our int64 ids (IVF does natively; others get an ID map)."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise ConfigError(f"FAISS cannot build {factory!r} for {dim}-d inner product: {detail}") from exc
    # index_factory hands back the concrete class, owning its C++ object: keep that proxy (a downcast
    # copy does not own it, and would dangle once the owner is collected).
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if isinstance(inner, faiss.IndexIVF):
        return index
    return faiss.IndexIDMap2(index)


@dataclass(frozen=True)
class Placement:
    """An index and the device it lives on; `owner` keeps GPU resources alive as long as the index."""

    index: Any
    device: str
    owner: Any = None


def place(index: Any, policy: GpuPolicy, faiss_module: Any = None) -> Placement:
    """Move the index to the GPUs FAISS sees, if the policy allows; otherwise keep it on the CPU.

    Index types FAISS has no GPU version of (HNSW, fast-scan PQ) stay on the CPU with a warning,
    unless GPUs are required. cuVS is used where the FAISS build has it (its cloner default).
    """
    api = faiss_module if faiss_module is not None else faiss
    gpus = 0 if policy is GpuPolicy.NEVER else gpu_count(api)
    if gpus == 0:
        if policy is GpuPolicy.REQUIRE:
            raise IndexDeviceError(_no_gpu_reason(api))
        return Placement(index=index, device="cpu")
    try:
        if gpus == 1:
            resources = api.StandardGpuResources()
            moved = api.index_cpu_to_gpu(resources, 0, index, api.GpuClonerOptions())
            return Placement(index=moved, device="cuda:0", owner=resources)
        options = api.GpuMultipleClonerOptions()
        options.shard = True
        moved = api.index_cpu_to_all_gpus(index, co=options, ngpu=gpus)
        return Placement(index=moved, device=f"cuda:0-{gpus - 1} (sharded)")
    except RuntimeError as exc:
        if policy is GpuPolicy.REQUIRE:
            raise IndexDeviceError(f"this index type cannot run on the GPU: {exc}") from exc
        log.warning("index stays on the CPU: FAISS cannot move it to the GPU (%s)", exc)
        return Placement(index=index, device="cpu")


def gpu_count(faiss_module: Any = None) -> int:
    """GPUs FAISS can use: 0 for a build without GPU support (faiss-cpu)."""
    api = faiss_module if faiss_module is not None else faiss
    return int(api.get_num_gpus()) if hasattr(api, "StandardGpuResources") else 0


def runs_on_gpu(policy: GpuPolicy) -> bool:
    """Whether an index under this policy will be placed on a GPU: what its type is chosen for."""
    return policy is not GpuPolicy.NEVER and gpu_count() > 0


def _no_gpu_reason(api: Any) -> str:
    if not hasattr(api, "StandardGpuResources"):
        return (f"index device gpu: this FAISS ({api.__version__}) is a CPU-only build; install "
                "faiss-gpu-cuvs (CUDA 13) or faiss-gpu-cu12, or set the index device to cpu or auto")
    return "index device gpu: FAISS has GPU support but sees no GPU (driver, CUDA_VISIBLE_DEVICES?)"


def to_cpu(placement: Placement, faiss_module: Any = None) -> Any:
    """The CPU version of a placed index (GPU indexes are copied back to be written to disk)."""
    if placement.device == "cpu":
        return placement.index
    api = faiss_module if faiss_module is not None else faiss
    return api.index_gpu_to_cpu(placement.index)
