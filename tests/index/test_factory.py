"""Choosing the index type by size, and moving it to GPUs (checked on the CPU with a fake FAISS GPU API)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import pytest

from vidsearch.errors import ConfigError, IndexDeviceError
from vidsearch.index import FaissClipIndex, GpuPolicy, IndexConfig, OpenOptions, SearchFilter, Tuning
from vidsearch.index.factory import (
    FLAT_MAX_VECTORS,
    MEMORY_BUDGET_BYTES,
    choose_factory,
    gpu_count,
    ivf_lists,
    new_index,
    place,
    plan_index,
    runs_on_gpu,
    to_cpu,
)

from .helpers import MODEL, build, clustered, make_records


def test_factory_by_size_within_the_memory_budget() -> None:
    assert MEMORY_BUDGET_BYTES == 8 << 30
    assert choose_factory(1_000, 512) == "Flat"
    assert choose_factory(FLAT_MAX_VECTORS - 1, 512) == "Flat"
    assert choose_factory(FLAT_MAX_VECTORS, 512) == "IVF2048,SQfp16"
    assert choose_factory(1_000_000, 512) == "IVF4096,SQfp16"
    assert choose_factory(8_388_608, 512) == "IVF16384,SQfp16", "float16 codes: exactly 8 GiB"
    assert choose_factory(8_388_609, 512) == "IVF16384,SQ8"
    assert choose_factory(16_777_217, 512) == "IVF16384,PQ128x4fs"
    assert choose_factory(2_000_000_000, 10) == "IVF65536,PQ2x4fs", "subquantizers divide the dimension"


def test_ivf_lists_follow_the_square_root_within_bounds() -> None:
    assert ivf_lists(1_000_000) == 4096
    assert ivf_lists(10) == 256
    assert ivf_lists(10**12) == 65_536


def test_plan_records_training_size_and_search_defaults() -> None:
    plan = plan_index(1_000_000, 512)
    assert plan.factory == "IVF4096,SQfp16"
    assert plan.train_size == 50 * 4096
    assert plan.params == {"nlist": 4096, "nprobe": 16}
    assert plan_index(500, 64, "HNSW32,Flat").params == {"ef_search": 128}
    assert plan_index(500, 64, "HNSW32,Flat").train_size == 0
    assert plan_index(5_000, 64, "IVF64,Flat").train_size == 5_000, "never more than the vectors there are"


def test_ids_are_native_for_ivf_and_mapped_for_the_rest() -> None:
    assert isinstance(new_index(8, "IVF4,Flat"), faiss.IndexIVFFlat)
    assert isinstance(new_index(8, "OPQ4,IVF4,PQ4"), faiss.IndexPreTransform)
    assert isinstance(new_index(8, "Flat"), faiss.IndexIDMap2)
    assert isinstance(new_index(8, "HNSW8,Flat"), faiss.IndexIDMap2)


def test_bad_factory_string_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'IVF,Nonsense'"):
        new_index(8, "IVF,Nonsense")


class FakeGpuFaiss:
    """Records the GPU calls vidsearch makes, standing in for faiss-gpu on a machine without GPUs."""

    def __init__(self, gpus: int, fail: bool = False) -> None:
        self.gpus = gpus
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    def get_num_gpus(self) -> int:
        return self.gpus

    def StandardGpuResources(self) -> str:  # noqa: N802 - the name faiss uses
        self.calls.append(("StandardGpuResources",))
        return "resources"

    def GpuClonerOptions(self) -> dict[str, bool]:  # noqa: N802
        return {"single": True}

    def GpuMultipleClonerOptions(self) -> Any:  # noqa: N802
        class Options:
            shard = False

        return Options()

    def index_cpu_to_gpu(self, resources: Any, device: int, index: Any, options: Any) -> str:
        self.calls.append(("index_cpu_to_gpu", resources, device, index, options))
        if self.fail:
            raise RuntimeError("not implemented for GPU")
        return "gpu-index"

    def index_cpu_to_all_gpus(self, index: Any, co: Any, ngpu: int) -> str:
        self.calls.append(("index_cpu_to_all_gpus", index, co.shard, ngpu))
        return "sharded-gpu-index"

    def index_gpu_to_cpu(self, index: Any) -> str:
        self.calls.append(("index_gpu_to_cpu", index))
        return "cpu-copy"


def test_no_gpu_keeps_the_index_on_the_cpu() -> None:
    api = FakeGpuFaiss(gpus=0)
    placement = place("cpu-index", GpuPolicy.AUTO, api)
    assert (placement.index, placement.device, api.calls) == ("cpu-index", "cpu", [])
    assert to_cpu(placement, api) == "cpu-index"


def test_one_gpu_clones_the_index_onto_it() -> None:
    api = FakeGpuFaiss(gpus=1)
    placement = place("cpu-index", GpuPolicy.AUTO, api)
    assert (placement.index, placement.device, placement.owner) == ("gpu-index", "cuda:0", "resources")
    assert api.calls == [
        ("StandardGpuResources",),
        ("index_cpu_to_gpu", "resources", 0, "cpu-index", {"single": True}),
    ]
    assert to_cpu(placement, api) == "cpu-copy"
    assert api.calls[-1] == ("index_gpu_to_cpu", "gpu-index")


def test_several_gpus_shard_the_index() -> None:
    api = FakeGpuFaiss(gpus=4)
    placement = place("cpu-index", GpuPolicy.AUTO, api)
    assert placement.index == "sharded-gpu-index"
    assert api.calls == [("index_cpu_to_all_gpus", "cpu-index", True, 4)]
    assert placement.device.startswith("cuda:0-3")


def test_policy_never_ignores_gpus() -> None:
    api = FakeGpuFaiss(gpus=2)
    assert place("cpu-index", GpuPolicy.NEVER, api).device == "cpu"
    assert api.calls == []


def test_policy_require_without_gpu_fails() -> None:
    with pytest.raises(ConfigError, match="sees no GPU"):
        place("cpu-index", GpuPolicy.REQUIRE, FakeGpuFaiss(gpus=0))


def test_types_without_gpu_version_stay_on_cpu(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeGpuFaiss(gpus=1, fail=True)
    with caplog.at_level(logging.WARNING):
        placement = place("hnsw-index", GpuPolicy.AUTO, api)
    assert (placement.index, placement.device) == ("hnsw-index", "cpu")
    assert "stays on the CPU" in caplog.text
    with pytest.raises(ConfigError, match="cannot run on the GPU"):
        place("hnsw-index", GpuPolicy.REQUIRE, FakeGpuFaiss(gpus=1, fail=True))


def test_real_faiss_here_has_no_gpu() -> None:
    index = new_index(8, "Flat")
    assert place(index, GpuPolicy.AUTO).device == "cpu"


def test_gpu_choice_keeps_to_types_the_gpu_serves() -> None:
    """No 4-bit fast-scan PQ (no GPU version) in a plan for the GPU; the same plan as the CPU's otherwise."""
    huge = 200_000_000
    assert choose_factory(huge, 512).endswith("x4fs")
    assert choose_factory(huge, 512, gpu=True) == f"IVF{ivf_lists(huge)},PQ64"
    for n in (1_000, 1_000_000, 8_000_000):
        assert choose_factory(n, 512, gpu=True) == choose_factory(n, 512)
    assert plan_index(huge, 512, gpu=True).factory == f"IVF{ivf_lists(huge)},PQ64"


def test_device_setting_maps_to_a_policy() -> None:
    assert [GpuPolicy.for_device(d) for d in ("cpu", "gpu", "auto")] == [
        GpuPolicy.NEVER, GpuPolicy.REQUIRE, GpuPolicy.AUTO]
    with pytest.raises(ConfigError, match="'tpu'"):
        GpuPolicy.for_device("tpu")


def test_device_gpu_without_gpu_faiss_is_a_typed_error() -> None:
    """faiss-cpu (this machine's) has no GPU API: a required GPU says to install GPU FAISS."""
    with pytest.raises(IndexDeviceError, match=r"CPU-only build.*faiss-gpu-cuvs"):
        place(new_index(8, "Flat"), GpuPolicy.REQUIRE)
    with pytest.raises(IndexDeviceError, match="sees no GPU"):
        place("cpu-index", GpuPolicy.REQUIRE, FakeGpuFaiss(gpus=0))
    assert gpu_count() == 0
    assert gpu_count(FakeGpuFaiss(gpus=2)) == 2


@pytest.mark.gpu
def test_index_on_a_real_gpu_matches_the_cpu_and_saves_in_cpu_form(tmp_path: Path) -> None:
    """On a GPU machine: the served top-10 equals the CPU's, and the snapshot reopens on the CPU."""
    if gpu_count() == 0:
        pytest.skip("FAISS sees no GPU")
    records, vectors = make_records(2_000), clustered(2_000, 64, seed=2)
    cpu = build(records, vectors)
    gpu = FaissClipIndex.create(IndexConfig(dim=64, model=MODEL, factory="Flat", gpu=GpuPolicy.REQUIRE))
    gpu.add(records, vectors)
    assert gpu.stats().device.startswith("cuda")
    queries = vectors[:16]
    assert [[h.clip.clip_id for h in row] for row in gpu.search_hits(queries, 10, SearchFilter(), Tuning())] \
        == [[h.clip.clip_id for h in row] for row in cpu.search_hits(queries, 10, SearchFilter(), Tuning())]
    gpu.save(tmp_path / "index")
    gpu.close()
    with FaissClipIndex.open(tmp_path / "index", OpenOptions(gpu=GpuPolicy.NEVER)) as reopened:
        assert reopened.stats().device == "cpu"
        assert len(reopened) == 2_000


def test_an_index_created_for_a_gpu_gets_a_type_the_gpu_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """With GPUs seen (faked), the default type is planned for them; real FAISS here keeps it on the CPU."""
    huge = 200_000_000
    assert not runs_on_gpu(GpuPolicy.AUTO)
    monkeypatch.setattr("vidsearch.index.faiss_index.runs_on_gpu", lambda policy: policy is GpuPolicy.AUTO)
    with FaissClipIndex.create(IndexConfig(dim=64, model=MODEL, expected_clips=huge)) as index:
        assert index.factory == f"IVF{ivf_lists(huge)},PQ8"
        assert index.stats().device == "cpu"
    config = IndexConfig(dim=64, model=MODEL, expected_clips=huge, gpu=GpuPolicy.NEVER)
    with FaissClipIndex.create(config) as cpu:
        assert cpu.factory == f"IVF{ivf_lists(huge)},PQ16x4fs"
