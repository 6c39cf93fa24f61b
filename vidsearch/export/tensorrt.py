"""TensorRT engines from the exported ONNX models, where the `tensorrt` module imports (a GPU machine).

One optimisation profile covers batch sizes [1, opt, max] for every input; fp16 sets the FP16
builder flag; int8 sets INT8 (with FP16 for the layers TensorRT keeps out of int8) and calibrates
with an entropy calibrator fed clips that `vidsearch.video` decoded from the user's videos. The
engine is serialized into the version directory (`model.plan`) with the calibration cache beside
it, and its outputs are checked against ONNX Runtime before anything is written.

`tensorrt` is imported only here, only when asked for, and the GPU buffers are torch CUDA tensors
(torch is there anyway), so this module costs nothing where TensorRT is absent. Written for the
TensorRT 10 Python API (`execute_async_v3`, named tensors, memory pools).
"""

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from vidsearch.errors import ExportError
from vidsearch.export.config import Precision
from vidsearch.export.parity import Runner

log = logging.getLogger(__name__)


def import_tensorrt() -> ModuleType | None:
    """The `tensorrt` module, or None where it cannot be imported (every CPU machine)."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as err:
        log.info("tensorrt does not import here (%s)", err)
        return None


def buffer_device(device: str | None = None) -> str:
    """Where engine and calibration buffers live: the GPU TensorRT runs on, wherever there is one."""
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class EngineSpec:
    """What the engine is built for: precision, batch profile, builder workspace."""

    precision: Precision
    opt_batch: int
    max_batch: int
    workspace_bytes: int

    @property
    def batches(self) -> tuple[int, int, int]:
        return 1, self.opt_batch, self.max_batch


def make_calibrator(trt: ModuleType, clips: NDArray[np.float32], input_name: str, batch_size: int,
                    cache_path: Path, device: str | None = None) -> Any:
    """An `IInt8EntropyCalibrator2` that hands TensorRT `clips` in batches, copied to `device`."""
    where = buffer_device(device)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffer: torch.Tensor | None = None  # kept alive while TensorRT reads it

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if names != [input_name]:
                raise ExportError(f"calibration asked for inputs {names}, the model has [{input_name}]")
            if self.position + batch_size > len(clips):
                return None
            batch = clips[self.position : self.position + batch_size]
            self.position += batch_size
            self.buffer = torch.from_numpy(np.ascontiguousarray(batch)).to(where)
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    if len(clips) < batch_size:
        raise ExportError(f"int8 calibration needs at least {batch_size} clips; the videos gave {len(clips)}")
    return EntropyCalibrator()


def build_engine(trt: ModuleType, onnx_path: Path, spec: EngineSpec, calibrator: Any = None) -> bytes:
    """Parse `onnx_path` (external weights beside it are found) and build a serialized engine."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = tuple(tensor.shape)[1:]
        shapes = [(batch, *dims) for batch in spec.batches]
        profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.precision == "int8":
        if calibrator is None:
            raise ExportError("an int8 engine needs a calibrator")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


def engine_runner(trt: ModuleType, plan: bytes, device: str | None = None) -> Runner:
    """Run a serialized engine on named numpy inputs (for the parity check against ONNX Runtime)."""
    where = buffer_device(device)
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise ExportError("TensorRT could not deserialize the engine it just built")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(batch: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        keep: list[torch.Tensor] = []
        for name, value in batch.items():
            tensor = torch.from_numpy(np.ascontiguousarray(value)).to(where)
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, int(tensor.data_ptr()))
            keep.append(tensor)
        results: dict[str, torch.Tensor] = {}
        for name in outputs:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(context.get_tensor_shape(name))
            torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
            results[name] = torch.empty(shape, dtype=torch_dtype, device=where)
            context.set_tensor_address(name, int(results[name].data_ptr()))
        on_gpu = where.startswith("cuda")
        stream = torch.cuda.current_stream().cuda_stream if on_gpu else 0
        if not context.execute_async_v3(stream):
            raise ExportError("TensorRT engine execution failed")
        if on_gpu:
            torch.cuda.synchronize()
        return {name: tensor.cpu().numpy().astype(np.float32) for name, tensor in results.items()}

    return run
