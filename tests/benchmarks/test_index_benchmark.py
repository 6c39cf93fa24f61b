"""benchmarks/index.py with --backend milvus: each FAISS factory against its Milvus twin, side by side."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from vidsearch.errors import ConfigError
from vidsearch.index import Tuning

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "index.py"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("index_benchmark", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def test_each_factory_has_a_milvus_twin_of_the_same_family_and_parameters() -> None:
    hnsw = bench.milvus_spec("HNSW32,Flat", 80)
    assert (hnsw.index_type, hnsw.build) == ("HNSW", {"M": 32, "efConstruction": 80})
    ivf = bench.milvus_spec("IVF1024,Flat", 40)
    assert (ivf.index_type, ivf.build) == ("IVF_FLAT", {"nlist": 1024})
    sq8 = bench.milvus_spec("IVF4096,SQ8", 40)
    assert (sq8.index_type, sq8.build) == ("IVF_SQ8", {"nlist": 4096})
    assert bench.milvus_spec("Flat", 40).index_type == "FLAT"
    assert bench.milvus_name(ivf) == "milvus IVF_FLAT nlist=1024"
    for other in ("IVF1024,PQ64", "IVF1024,SQfp16", "HNSW32,SQ8", "PCA64,Flat"):
        with pytest.raises(ConfigError, match="no Milvus twin"):
            bench.milvus_spec(other, 40)


def test_ivf_sweeps_the_given_nprobe_values_and_hnsw_the_given_ef() -> None:
    assert bench.sweep("IVF1024,Flat", [64], [2, 8]) == [Tuning(nprobe=2), Tuning(nprobe=8)]
    assert bench.sweep("HNSW32,Flat", [64, 128], [2]) == [Tuning(ef_search=64), Tuning(ef_search=128)]
    assert bench.sweep("Flat", [64], [2]) == [Tuning()]


def test_a_factory_without_a_twin_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "milvus", "--n", "1000", "--factory", "IVF64,PQ16",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "has no Milvus twin" in run.stderr
    assert "data:" not in run.stdout
    assert not out.exists()


def test_ivf_side_by_side_measures_both_backends_at_the_same_nprobe(tmp_path: Path) -> None:
    """A real (small) run: FAISS IVF and a real Milvus IVF_FLAT, the same nlist and nprobe values."""
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "milvus", "--n", "3000", "--queries", "64",
         "--seconds", "0.3", "--factory", "IVF32,Flat", "--nprobe", "2", "--nprobe", "32", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = {r["factory"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"IVF32,Flat", "milvus IVF_FLAT nlist=32"}
    faiss_ivf, milvus_ivf = results["IVF32,Flat"], results["milvus IVF_FLAT nlist=32"]
    for result in (faiss_ivf, milvus_ivf):
        assert [p["setting"] for p in result["points"]] == ["nprobe=2", "nprobe=32"]
        assert all(p["qps_b1"] > 0 and p["qps_b64"] > 0 for p in result["points"])
        assert result["points"][1]["recall_at_10"] == pytest.approx(1.0)  # every list probed: exact
        assert result["points"][0]["recall_at_10"] < 1.0
    assert sum(milvus_ivf["segments"]) == 3000
    assert milvus_ivf["build_s"] > 0
    assert milvus_ivf["rss_delta_mb"] > 0
    assert "like with like" in run.stdout
