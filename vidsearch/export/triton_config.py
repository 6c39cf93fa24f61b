"""Triton `config.pbtxt` files, built as Triton's own `ModelConfig` protobuf message.

Every configuration is a message from tritonclient's `model_config_pb2` (the schema the server
parses), written with `text_format` and read back before it is used, so a field that does not exist
or a value of the wrong type fails at export time, not when the server loads the repository.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from vidsearch.errors import ExportError, MissingDependencyError
from vidsearch.export.graphs import Graph, TensorSpec

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

_DATA_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
}
_PRECISION_MODES = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


@dataclass(frozen=True)
class Serving:
    """How Triton schedules a model: batch limits, dynamic batching, instances and where they run."""

    max_batch: int
    preferred_batches: tuple[int, ...]
    queue_delay_us: int
    instances: int = 1
    gpu: bool = False
    cpu_threads: int = 0


def schema() -> ModuleType:
    """Triton's `model_config_pb2` (shipped in tritonclient), imported when first needed."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        raise MissingDependencyError("writing a Triton model repository needs tritonclient: "
                                     "pip install 'vidsearch[triton]'") from err
    return model_config_pb2


def data_type(dtype: str) -> int:
    if dtype not in _DATA_TYPES:
        raise ExportError(f"no Triton data type for {dtype!r}")
    return int(schema().DataType.Value(_DATA_TYPES[dtype]))


def _inputs(specs: Sequence[TensorSpec]) -> list[object]:
    """Model inputs; a variable-length one (encoded bytes) is ragged, so that requests of different
    lengths still batch together."""
    factory = schema().ModelInput
    return [factory(name=s.name, data_type=data_type(s.dtype), dims=list(s.shape),
                    allow_ragged_batch=-1 in s.shape) for s in specs]


def _outputs(specs: Sequence[TensorSpec]) -> list[object]:
    factory = schema().ModelOutput
    return [factory(name=s.name, data_type=data_type(s.dtype), dims=list(s.shape)) for s in specs]


def _base(name: str, serving: Serving, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
          ) -> "mc.ModelConfig":
    pb = schema()
    config = pb.ModelConfig(name=name, max_batch_size=serving.max_batch)
    config.input.extend(_inputs(inputs))
    config.output.extend(_outputs(outputs))
    config.dynamic_batching.preferred_batch_size.extend(serving.preferred_batches)
    config.dynamic_batching.max_queue_delay_microseconds = serving.queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if serving.gpu else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.append(pb.ModelInstanceGroup(kind=kind, count=serving.instances))
    return config


def _parameters(config: "mc.ModelConfig", values: Mapping[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def onnxruntime_config(graph: Graph, serving: Serving, tensorrt_precision: str | None,
                       workspace_bytes: int) -> "mc.ModelConfig":
    """Triton's ONNX Runtime backend; with `tensorrt_precision`, TensorRT as its execution accelerator
    (ONNX Runtime builds and caches the engines on the GPU at load time)."""
    config = _base(graph.name, serving, graph.inputs, graph.outputs)
    config.platform = "onnxruntime_onnx"
    config.default_model_filename = "model.onnx"
    if tensorrt_precision is not None:
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        accelerator = accelerators.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = _PRECISION_MODES[tensorrt_precision]
        accelerator.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
        accelerator.parameters["trt_engine_cache_enable"] = "1"
        accelerator.parameters["trt_engine_cache_path"] = f"/tmp/vidsearch_trt_cache/{graph.name}"
        # LayerNorm overflows in fp16 on some inputs; keeping it in fp32 costs little.
        accelerator.parameters["trt_layer_norm_fp32_fallback"] = "1"
    if serving.cpu_threads:
        _parameters(config, {"intra_op_thread_count": str(serving.cpu_threads)})
    return config


def tensorrt_config(graph: Graph, serving: Serving) -> "mc.ModelConfig":
    """Triton's TensorRT backend running a serialized engine (`model.plan`)."""
    config = _base(graph.name, serving, graph.inputs, graph.outputs)
    config.platform = "tensorrt_plan"
    config.default_model_filename = "model.plan"
    return config


def python_config(graph: Graph, serving: Serving) -> "mc.ModelConfig":
    """Triton's Python backend running vidsearch's `model.py`: ONNX Runtime on the CPU."""
    config = _base(graph.name, serving, graph.inputs, graph.outputs)
    config.backend = "python"
    # No spin-waiting: on a CPU the server shares, spinning threads steal the cores the work needs
    # (benchmarks/runtimes.py: 1.6x the text tower's queries/s at batch 1 on a busy 2-core machine).
    _parameters(config, {"onnx_model": "model.onnx", "intra_op_thread_count": str(serving.cpu_threads),
                         "allow_spinning": "0"})
    return config


def python_video_config(name: str, serving: Serving, inputs: Sequence[TensorSpec], output: TensorSpec
                        ) -> "mc.ModelConfig":
    """Triton's Python backend running vidsearch's `video_model.py`: encoded bytes → frames, with PyAV
    on the CPU (the CPU target's `video_preprocess`)."""
    config = _base(name, serving, inputs, [output])
    config.backend = "python"
    _parameters(config, {"decode_threads": str(serving.cpu_threads)})
    return config


def dali_config(name: str, serving: Serving, inputs: Sequence[TensorSpec], output: TensorSpec
                ) -> "mc.ModelConfig":
    """Triton's DALI backend running a serialized pipeline (`model.dali`): encoded bytes → frames."""
    config = _base(name, serving, inputs, [output])
    config.backend = "dali"
    config.default_model_filename = "model.dali"
    return config


@dataclass(frozen=True)
class Step:
    """One model of an ensemble, with its tensors wired to the ensemble's (model name → ensemble name)."""

    model: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


def ensemble_config(name: str, max_batch: int, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                    steps: Sequence[Step]) -> "mc.ModelConfig":
    """A Triton ensemble: the steps run in order on the server, tensors passed between them in memory."""
    pb = schema()
    config = pb.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch)
    config.input.extend(_inputs(inputs))
    config.output.extend(_outputs(outputs))
    for step in steps:
        scheduled = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        scheduled.input_map.update(step.inputs)
        scheduled.output_map.update(step.outputs)
    return config


def to_text(config: "mc.ModelConfig") -> str:
    """The `config.pbtxt` text of a configuration, checked by parsing it back."""
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    if parse(text, config.name) != config:
        raise ExportError(f"{config.name}: config.pbtxt does not read back as the configuration written")
    return text


def parse(text: str, what: str = "config.pbtxt") -> "mc.ModelConfig":
    """Parse `config.pbtxt` text with Triton's schema; unknown fields and bad values are errors."""
    from google.protobuf import text_format

    config = schema().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ExportError(f"{what}: not a valid Triton model configuration: {err}") from err
    return config
