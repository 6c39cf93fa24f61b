"""A stand-in for the `tensorrt` module (which cannot be installed here) that records every call.

It behaves like TensorRT 10 where the export code depends on it: the parser reads the ONNX model's
inputs, the builder checks that the profile covers every input and drives an int8 calibrator to the
end (reading the batches through the pointers it is given), and the "engine" it serializes runs the
ONNX model with ONNX Runtime, reading inputs from and writing outputs to the addresses bound on the
execution context, so that the parity check downstream is exercised for real. `perturb` adds an
error to the engine's outputs.
"""

import ctypes
import enum
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort


class BuilderFlag(enum.Enum):
    FP16 = "FP16"
    INT8 = "INT8"


class MemoryPoolType(enum.Enum):
    WORKSPACE = "WORKSPACE"


class TensorIOMode(enum.Enum):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


class DataType(enum.Enum):
    FLOAT = np.float32
    INT64 = np.int64


_ONNX_TYPES = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.INT64: DataType.INT64}


class Logger:
    WARNING = "WARNING"

    def __init__(self, level: str) -> None:
        self.level = level


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        self.base_initialised = True


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DataType


@dataclass
class Network:
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    source: Path | None = None

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> Tensor:
        return self.inputs[index]


def _tensors(values: Any) -> list[Tensor]:
    out = []
    for value in values:
        dims = tuple(d.dim_value if d.dim_value else -1 for d in value.type.tensor_type.shape.dim)
        out.append(Tensor(value.name, dims, _ONNX_TYPES[value.type.tensor_type.elem_type]))
    return out


class OnnxParser:
    def __init__(self, network: Network, logger: Logger) -> None:
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        model = onnx.load(path, load_external_data=False)
        self.network.inputs = _tensors(model.graph.input)
        self.network.outputs = _tensors(model.graph.output)
        self.network.source = Path(path)
        return True

    def get_error(self, index: int) -> str:
        return ""


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        self.shapes[name] = (tuple(low), tuple(opt), tuple(high))


class BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[Profile] = []
        self.int8_calibrator: Any = None
        self.calibration_profile: Profile | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: Profile) -> None:
        self.calibration_profile = profile


class Builder:
    def __init__(self, fake: "FakeTensorRT", logger: Logger) -> None:
        self.fake = fake

    def create_network(self, flags: int) -> Network:
        assert flags == 0, "TensorRT 10 networks are explicit-batch without flags"
        return Network()

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
        assert len(config.profiles) == 1
        profiled = set(config.profiles[0].shapes)
        assert profiled == {t.name for t in network.inputs}, "every input needs a profile"
        calibrated = 0
        if BuilderFlag.INT8 in config.flags:
            calibrated = self._calibrate(network, config)
        self.fake.builds.append({"network": network, "config": config, "calibration_batches": calibrated})
        if self.fake.fail_build:
            return None
        flags = sorted(f.value for f in config.flags)
        return json.dumps({"onnx": str(network.source), "flags": flags}).encode()

    def _calibrate(self, network: Network, config: BuilderConfig) -> int:
        calibrator = config.int8_calibrator
        assert calibrator is not None
        assert calibrator.base_initialised
        assert config.calibration_profile is config.profiles[0]
        name = network.inputs[0].name
        shape = network.inputs[0].shape[1:]
        batch = calibrator.get_batch_size()
        count = 0
        while (pointers := calibrator.get_batch([name])) is not None:
            values = _read(pointers[0], (batch, *shape), np.float32)
            self.fake.calibration_data.append(values.copy())
            count += 1
        calibrator.write_calibration_cache(b"fake-calibration-table")
        return count


def _read(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_char * size).from_address(address)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


class Engine:
    def __init__(self, fake: "FakeTensorRT", plan: bytes) -> None:
        self.fake = fake
        source = json.loads(plan)["onnx"]
        self.session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        model = onnx.load(source, load_external_data=False)
        self.tensors = {t.name: (t, TensorIOMode.INPUT) for t in _tensors(model.graph.input)}
        self.tensors.update({t.name: (t, TensorIOMode.OUTPUT) for t in _tensors(model.graph.output)})
        self.names = list(self.tensors)

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensors[name][0].dtype

    def create_execution_context(self) -> "Context":
        return Context(self)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch = next(iter(self.shapes.values()))[0]
        return (batch, *self.engine.tensors[name][0].shape[1:])

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        inputs = {}
        for name, shape in self.shapes.items():
            inputs[name] = _read(self.addresses[name], shape, self.engine.tensors[name][0].dtype.value).copy()
        outputs = [n for n in self.engine.names if self.engine.get_tensor_mode(n) == TensorIOMode.OUTPUT]
        results = self.engine.session.run(outputs, inputs)
        for name, value in zip(outputs, results, strict=True):
            value = np.ascontiguousarray(value + self.engine.fake.perturb, dtype=np.float32)
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        self.engine.fake.executions += 1
        return True


class Runtime:
    def __init__(self, fake: "FakeTensorRT", logger: Logger) -> None:
        self.fake = fake

    def deserialize_cuda_engine(self, plan: bytes) -> Engine:
        return Engine(self.fake, plan)


class FakeTensorRT(types.ModuleType):
    """The fake module; `builds`, `calibration_data` and `executions` record what happened."""

    def __init__(self) -> None:
        super().__init__("tensorrt")
        self.builds: list[dict[str, Any]] = []
        self.calibration_data: list[np.ndarray] = []
        self.executions = 0
        self.perturb = 0.0
        self.fail_build = False
        self.Logger = Logger
        self.BuilderFlag = BuilderFlag
        self.MemoryPoolType = MemoryPoolType
        self.TensorIOMode = TensorIOMode
        self.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        self.OnnxParser = OnnxParser

    def Builder(self, logger: Logger) -> Builder:  # noqa: N802 (TensorRT's name)
        return Builder(self, logger)

    def Runtime(self, logger: Logger) -> Runtime:  # noqa: N802 (TensorRT's name)
        return Runtime(self, logger)

    @staticmethod
    def nptype(dtype: DataType) -> Any:
        return dtype.value
