"""Every config.pbtxt is Triton's own ModelConfig message, written as text and parsed back."""

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vidsearch.errors import ExportError
from vidsearch.export import triton_config
from vidsearch.export.graphs import TensorSpec, graphs_for

from .conftest import TinyModel

SERVING_GPU = triton_config.Serving(max_batch=16, preferred_batches=(8, 16), queue_delay_us=1500, instances=2,
                                    gpu=True)
SERVING_CPU = triton_config.Serving(max_batch=4, preferred_batches=(2, 4), queue_delay_us=500, cpu_threads=2)


def _round_trip(config: mc.ModelConfig) -> mc.ModelConfig:
    parsed = triton_config.parse(triton_config.to_text(config))
    assert parsed == config
    return parsed


def test_onnxruntime_gpu_config_has_batching_gpu_instances_and_the_tensorrt_accelerator(
    tiny_viclip: TinyModel,
) -> None:
    text, _ = graphs_for(tiny_viclip.model)
    config = _round_trip(triton_config.onnxruntime_config(text, SERVING_GPU, "fp16", 1 << 30))
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("TOKENS", mc.TYPE_INT64, [32])]
    outputs = [(o.name, list(o.dims)) for o in config.output]
    assert outputs == [("EMBEDDING", [32]), ("EMBEDDING_NORMALIZED", [32])]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1500
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["max_workspace_size_bytes"] == str(1 << 30)
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"


def test_tensorrt_plan_config(tiny_viclip: TinyModel) -> None:
    _, vision = graphs_for(tiny_viclip.model)
    config = _round_trip(triton_config.tensorrt_config(vision, SERVING_GPU))
    assert config.platform == "tensorrt_plan"
    assert config.default_model_filename == "model.plan"
    assert list(config.input[0].dims) == [8, 3, 32, 32]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_python_backend_config_runs_on_cpu_and_names_the_onnx_file(tiny_viclip: TinyModel) -> None:
    _, vision = graphs_for(tiny_viclip.model)
    config = _round_trip(triton_config.python_config(vision, SERVING_CPU))
    assert config.backend == "python"
    assert not config.platform
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    assert config.parameters["onnx_model"].string_value == "model.onnx"
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert config.parameters["allow_spinning"].string_value == "0"


def test_ensemble_wires_its_steps_tensors(tiny_viclip: TinyModel) -> None:
    _, vision = graphs_for(tiny_viclip.model)
    frames = vision.inputs[0]
    step = triton_config.Step("pre", {"VIDEO": "VIDEO"}, {"FRAMES": "frames"})
    last = triton_config.Step(vision.name, {frames.name: "frames"}, {"EMBEDDING": "EMBEDDING"})
    video = TensorSpec("VIDEO", "uint8", (-1,))
    config = _round_trip(triton_config.ensemble_config("embed", 4, [video], vision.outputs[:1], [step, last]))
    assert config.platform == "ensemble"
    assert config.input[0].allow_ragged_batch  # encoded videos differ in length
    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["pre", vision.name]
    assert dict(steps[1].input_map) == {"FRAMES": "frames"}


def test_a_text_that_is_not_a_model_config_is_refused() -> None:
    with pytest.raises(ExportError, match="not a valid Triton model configuration"):
        triton_config.parse('name: "x"\nmax_batch_size: "many"\n')
    with pytest.raises(ExportError, match="not a valid Triton model configuration"):
        triton_config.parse('name: "x"\nno_such_field: 1\n')


def test_written_text_is_what_protobuf_writes(tiny_viclip: TinyModel) -> None:
    text, _ = graphs_for(tiny_viclip.model)
    config = triton_config.python_config(text, SERVING_CPU)
    assert triton_config.to_text(config) == text_format.MessageToString(config)
