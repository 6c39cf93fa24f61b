"""`--target gpu` on a machine without TensorRT: ONNX with the TensorRT accelerator, the DALI
preprocessing model and the ensemble, all configs consistent with each other."""

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from vidsearch.export import ExportConfig, ExportResult, export_model, triton_config
from vidsearch.export.graphs import scaled_preprocess

from .conftest import TinyModel

pytest.importorskip("nvidia.dali", reason="the GPU repository's video_preprocess model needs NVIDIA DALI")


@pytest.fixture(scope="module")
def gpu_export(tiny_viclip: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    out = tmp_path_factory.mktemp("gpu") / "repo"
    return export_model(ExportConfig(str(tiny_viclip.preset), tiny_viclip.checkpoint, out, target="gpu",
                                     precision="fp16", max_batch=8, queue_delay_us=750, instances=2))


def _configs(out: Path) -> dict[str, mc.ModelConfig]:
    return {p.parent.name: triton_config.parse(p.read_text()) for p in out.glob("*/config.pbtxt")}


def test_without_tensorrt_it_says_so_and_writes_onnx_with_the_tensorrt_accelerator(
    gpu_export: ExportResult,
) -> None:
    assert not gpu_export.tensorrt
    assert any("tensorrt does not import here" in note for note in gpu_export.notes)
    configs = _configs(gpu_export.out)
    assert sorted(configs) == ["viclip_text", "viclip_video_embed", "viclip_vision", "video_preprocess"]
    for name in ("viclip_text", "viclip_vision"):
        config = configs[name]
        assert config.platform == "onnxruntime_onnx"
        files = sorted(p.name for p in (gpu_export.out / name / "1").iterdir())
        assert files == ["model.onnx", "model.safetensors", "vidsearch.json"]
        (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert (accelerator.name, accelerator.parameters["precision_mode"]) == ("tensorrt", "FP16")
        assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 750


def test_video_preprocess_is_the_video_packages_dali_pipeline_for_the_models_spec(
    gpu_export: ExportResult, tiny_viclip: TinyModel
) -> None:
    from vidsearch.video import dali

    config = _configs(gpu_export.out)["video_preprocess"]
    assert config.backend == "dali"
    assert [(i.name, i.data_type, list(i.dims), i.allow_ragged_batch) for i in config.input] == [
        ("encoded", mc.TYPE_UINT8, [-1], True), ("frames", mc.TYPE_INT32, [8], False)
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("clip", [8, 3, 32, 32])]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    serialized = (gpu_export.out / "video_preprocess" / "1" / "model.dali").read_bytes()
    spec = scaled_preprocess("viclip", 32, 8)
    expected = dali.build_pipeline(spec, "gpu", batch_size=8, num_threads=4, device_id=None).serialize()
    assert serialized == bytes(expected)
    assert b"mixed" in serialized
    data = json.loads((gpu_export.out / "video_preprocess" / "1" / "vidsearch.json").read_text())
    assert data["preprocess"]["digest"] == spec.digest()


def test_the_ensemble_wires_existing_models_and_tensors(gpu_export: ExportResult) -> None:
    configs = _configs(gpu_export.out)
    ensemble = configs["viclip_video_embed"]
    assert ensemble.platform == "ensemble"
    assert ensemble.max_batch_size == 8
    available = {i.name for i in ensemble.input}
    assert available == {"VIDEO", "FRAME_INDICES"}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}
        assert set(step.input_map.values()) <= available
        assert set(step.output_map) <= {o.name for o in model.output}
        available |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= available
    vision_outputs = {(o.name, tuple(o.dims)) for o in configs["viclip_vision"].output}
    assert {(o.name, tuple(o.dims)) for o in ensemble.output} == vision_outputs
