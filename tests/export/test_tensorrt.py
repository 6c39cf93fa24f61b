"""The TensorRT path, against a fake `tensorrt` module that records and checks the calls (TensorRT
cannot be installed on these machines; the real engines are built on a GPU machine)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import ExportError, ParityError
from vidsearch.export import export_model, tensorrt, triton_config
from vidsearch.export.graphs import graphs_for
from vidsearch.export.inputs import generated_video
from vidsearch.export.onnx_export import export_onnx

from .conftest import TinyModel, export_config
from .fake_tensorrt import BuilderFlag, FakeTensorRT, MemoryPoolType


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> FakeTensorRT:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


@pytest.fixture(scope="module")
def vision_onnx(tiny_viclip: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, vision = graphs_for(tiny_viclip.model)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(vision, path, opset=18, max_batch=8, simplify=True, external_data_threshold=1 << 40)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    folder = tmp_path_factory.mktemp("videos")
    paths = tuple(folder / f"clip{i}.mp4" for i in range(3))
    for path in paths:
        path.write_bytes(generated_video())
    return paths


def test_without_tensorrt_the_import_is_reported_not_raised() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    assert tensorrt.import_tensorrt() is None


def test_fp16_engine_has_one_profile_over_batch_1_opt_max(fake_trt: FakeTensorRT, vision_onnx: Path) -> None:
    spec = tensorrt.EngineSpec("fp16", opt_batch=4, max_batch=8, workspace_bytes=1 << 30)
    plan = tensorrt.build_engine(fake_trt, vision_onnx, spec)
    assert json.loads(plan)["onnx"] == str(vision_onnx)
    (build,) = fake_trt.builds
    config = build["config"]
    assert config.flags == {BuilderFlag.FP16}
    assert config.pools == {MemoryPoolType.WORKSPACE: 1 << 30}
    (profile,) = config.profiles
    assert profile.shapes == {"FRAMES": ((1, 8, 3, 32, 32), (4, 8, 3, 32, 32), (8, 8, 3, 32, 32))}
    assert config.int8_calibrator is None


def test_int8_engine_is_calibrated_on_the_clips_it_is_given(fake_trt: FakeTensorRT, vision_onnx: Path,
                                                            tmp_path: Path) -> None:
    clips = np.random.default_rng(0).standard_normal((5, 8, 3, 32, 32), dtype=np.float32)
    cache = tmp_path / "calibration.cache"
    calibrator = tensorrt.make_calibrator(fake_trt, clips, "FRAMES", 2, cache)
    spec = tensorrt.EngineSpec("int8", opt_batch=2, max_batch=8, workspace_bytes=1 << 30)
    tensorrt.build_engine(fake_trt, vision_onnx, spec, calibrator)
    config = fake_trt.builds[0]["config"]
    assert config.flags == {BuilderFlag.FP16, BuilderFlag.INT8}
    assert fake_trt.builds[0]["calibration_batches"] == 2  # 5 clips in batches of 2; the last one is partial
    np.testing.assert_array_equal(np.concatenate(fake_trt.calibration_data), clips[:4])
    assert cache.read_bytes() == b"fake-calibration-table"
    assert calibrator.read_calibration_cache() == b"fake-calibration-table"
    with pytest.raises(ExportError, match="needs a calibrator"):
        tensorrt.build_engine(fake_trt, vision_onnx, spec)


def test_too_few_calibration_clips_are_refused(fake_trt: FakeTensorRT, tmp_path: Path) -> None:
    clips = np.zeros((1, 8, 3, 32, 32), dtype=np.float32)
    with pytest.raises(ExportError, match="at least 4 clips"):
        tensorrt.make_calibrator(fake_trt, clips, "FRAMES", 4, tmp_path / "cache")


def test_a_failed_build_is_an_error(fake_trt: FakeTensorRT, vision_onnx: Path) -> None:
    fake_trt.fail_build = True
    with pytest.raises(ExportError, match="TensorRT failed to build an engine"):
        tensorrt.build_engine(fake_trt, vision_onnx, tensorrt.EngineSpec("fp32", 1, 2, 1 << 20))


def test_engine_runner_binds_inputs_and_outputs_by_name(fake_trt: FakeTensorRT, vision_onnx: Path) -> None:
    import onnxruntime as ort

    plan = tensorrt.build_engine(fake_trt, vision_onnx, tensorrt.EngineSpec("fp32", 2, 8, 1 << 20))
    frames = np.random.default_rng(1).standard_normal((3, 8, 3, 32, 32), dtype=np.float32)
    got = tensorrt.engine_runner(fake_trt, plan)({"FRAMES": frames})
    session = ort.InferenceSession(str(vision_onnx), providers=["CPUExecutionProvider"])
    want = session.run(None, {"FRAMES": frames})
    assert fake_trt.executions == 1
    np.testing.assert_array_equal(got["EMBEDDING"], want[0])
    np.testing.assert_array_equal(got["EMBEDDING_NORMALIZED"], want[1])


def test_gpu_export_with_tensorrt_writes_int8_plans_checked_against_onnxruntime(
    fake_trt: FakeTensorRT, tiny_videomae: TinyModel, videos: tuple[Path, ...], tmp_path: Path
) -> None:
    config = export_config(tiny_videomae, tmp_path / "repo", target="gpu", precision="int8", max_batch=4,
                           calibration_videos=videos)
    result = export_model(config)
    assert result.tensorrt
    (model,) = result.models
    assert sorted(p.name for p in model.path.iterdir()) == ["calibration.cache", "model.onnx", "model.plan",
                                                            "model.safetensors", "vidsearch.json"]
    model_config = triton_config.parse((model.path.parent / "config.pbtxt").read_text())
    assert model_config.platform == "tensorrt_plan"
    (build,) = fake_trt.builds
    assert build["config"].profiles[0].shapes["VIDEO"][1][0] == 2  # opt batch of max 4
    assert build["calibration_batches"] == 1  # 3 clips (one per video) in batches of 2
    trt_figures = [f for f in model.parity if f.candidate == "tensorrt"]
    assert {(f.reference, f.inputs, f.batch) for f in trt_figures} == {
        ("onnxruntime", kind, batch) for kind in ("random", "real") for batch in (1, 4)
    }
    assert all(f.bound == 1e-1 for f in trt_figures)
    assert fake_trt.executions == 4
    data = json.loads((model.path / "vidsearch.json").read_text())
    assert data["engine"]["tensorrt_plan"] == "model.plan"
    assert data["identity"]["precision"] == "int8"


def test_an_engine_that_disagrees_with_onnxruntime_is_not_written(
    fake_trt: FakeTensorRT, tiny_videomae: TinyModel, tmp_path: Path
) -> None:
    fake_trt.perturb = 1.0
    config = export_config(tiny_videomae, tmp_path / "repo", target="gpu", precision="fp16", max_batch=2)
    with pytest.raises(ParityError, match="tensorrt vs onnxruntime"):
        export_model(config)
    assert not (tmp_path / "repo").exists()
