"""benchmarks/index.py with --backend milvus: each FAISS factory against its Milvus twin, side by side."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
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


def test_a_clip_tied_with_the_kth_true_neighbour_counts_as_one_of_them() -> None:
    """Recall's truth: the top K, plus a clip within TIE of the K-th, not one clearly below it."""
    dim, k = 16, bench.K
    query = np.zeros((1, dim), dtype=np.float32)
    query[0, 0] = 1.0
    scores = [0.9 - 0.01 * rank for rank in range(k)] + [0.9 - 0.01 * (k - 1) - 2e-6, 0.5]
    base = np.zeros((len(scores), dim), dtype=np.float32)
    base[:, 0] = scores
    base[:, 1] = np.sqrt(1.0 - base[:, 0] ** 2)  # unit rows, inner product with the query = score
    truth = bench.true_neighbours(base, query)
    assert truth == [set(range(k + 1))], "the 11th ties the 10th within float32 error; the 12th is a miss"


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


def test_each_milvus_point_is_divided_by_its_faiss_twin_at_the_same_setting() -> None:
    def point(setting: str, recall: float, b1: float, clients: float, b64: float) -> object:
        return bench.Point(setting, recall, qps_b1=b1, qps_b1_2threads=0, qps_b64=b64, faiss_qps_b1=0,
                           qps_b1_clients=clients)  # fmt: skip

    faiss_ivf = bench.Result("IVF64,Flat", 1, 0, 1, 1, points=[
        point("nprobe=2", 0.9, 1000, 2000, 4000), point("nprobe=8", 0.99, 500, 0, 2000)])  # fmt: skip
    faiss_hnsw = bench.Result("HNSW32,Flat", 1, 0, 1, 1, points=[point("nprobe=2", 0.5, 1, 1, 1)])
    milvus_ivf = bench.Result("milvus IVF_FLAT nlist=64", 1, 0, 1, 0, twin_of="IVF64,Flat", points=[
        point("nprobe=2", 0.95, 250, 1500, 1000), point("nprobe=8", 0.98, 250, 700, 3000),
        point("nprobe=32", 1.0, 10, 10, 10)])  # fmt: skip
    rows = bench.versus([faiss_ivf, faiss_hnsw, milvus_ivf])
    assert [r["setting"] for r in rows] == ["nprobe=2", "nprobe=8"], "nprobe=32: FAISS measured no twin"
    assert {r["faiss"] for r in rows} == {"IVF64,Flat"}, "never the HNSW point of the same setting"

    def ratios(row: dict[str, object]) -> tuple[object, ...]:
        return tuple(row[f"ratio_{name}"] for name in ("qps_b1", "qps_b1_clients", "qps_b64"))

    first, second = rows
    assert (first["recall_milvus"], first["recall_faiss"]) == (0.95, 0.9)
    assert ratios(first) == (0.25, 0.75, 0.25)
    assert ratios(second) == (0.5, 0.0, 1.5), "no FAISS number to divide by: 0"


@pytest.mark.parametrize(("flags", "message"), [
    (["--factory", "IVF64,PQ16"], "has no Milvus twin"),
    (["--milvus-concurrent-searches", "0"], "concurrent_searches must be at least 1"),
])  # fmt: skip
def test_a_factory_without_a_twin_or_a_bad_milvus_option_is_refused_before_any_work(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "milvus", "--n", "1000", *flags, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert message in run.stderr
    assert "data:" not in run.stdout
    assert not out.exists()


def test_ivf_side_by_side_measures_both_backends_at_the_same_nprobe(tmp_path: Path) -> None:
    """A real (small) run: FAISS IVF and a real Milvus IVF_FLAT, the same nlist and nprobe values."""
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "milvus", "--n", "3000", "--queries", "64",
         "--seconds", "0.3", "--factory", "IVF32,Flat", "--nprobe", "2", "--nprobe", "32", "--clients", "4",
         "--milvus-segment-mb", "8", "--milvus-concurrent-searches", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    results = {r["factory"]: r for r in report["results"]}
    assert set(results) == {"IVF32,Flat", "milvus IVF_FLAT nlist=32"}
    faiss_ivf, milvus_ivf = results["IVF32,Flat"], results["milvus IVF_FLAT nlist=32"]
    for result in (faiss_ivf, milvus_ivf):
        assert [p["setting"] for p in result["points"]] == ["nprobe=2", "nprobe=32"]
        assert all(p["qps_b1"] > 0 and p["qps_b64"] > 0 and p["qps_b1_clients"] > 0 for p in result["points"])
        assert result["points"][1]["recall_at_10"] == pytest.approx(1.0)  # every list probed: exact
        assert result["points"][0]["recall_at_10"] < 1.0
    assert sum(milvus_ivf["segments"]) == 3000
    assert len(milvus_ivf["segments"]) > 1, "8 MB segments: Milvus sealed several"
    assert sum(milvus_ivf["segments_after"]) == 3000, "read again after the measurements"
    assert report["milvus_segment_mb"] == 8
    assert report["milvus_concurrent_searches"] == 2
    versus = report["milvus_vs_faiss"]
    assert [row["setting"] for row in versus] == ["nprobe=2", "nprobe=32"]
    assert all(row["ratio_qps_b1"] > 0 and row["ratio_qps_b1_clients"] > 0 for row in versus)
    assert "Milvus / FAISS" in run.stdout
    assert milvus_ivf["build_s"] > 0
    assert milvus_ivf["rss_delta_mb"] > 0
    assert "like with like" in run.stdout
