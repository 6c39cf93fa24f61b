"""What one `vidsearch export` run is asked to do, parsed and checked once at the edge.

Precision and target decide the artefacts: `cpu` serves float32 ONNX through ONNX Runtime inside
Triton's Python backend; `gpu` serves a TensorRT plan (where `tensorrt` imports) or the ONNX model
with ONNX Runtime's TensorRT execution accelerator, in fp32, fp16 or int8.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from vidsearch.errors import CheckpointError, ConfigError

Target = Literal["cpu", "gpu"]
Precision = Literal["fp32", "fp16", "int8"]

MIN_OPSET = 18
# Protobuf cannot hold a message of 2 GiB or more: larger models keep their weights in a side file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26


@dataclass(frozen=True)
class ExportConfig:
    """One export: which model, from which checkpoint, into which Triton model repository, for what."""

    model: str  # a preset name or the path of a preset JSON file
    checkpoint: Path
    out: Path
    target: Target = "cpu"
    precision: Precision = "fp32"
    max_batch: int = 16
    version: int | None = None  # None: the next free version number of each model
    opset: int = MIN_OPSET
    simplify: bool = True  # constant folding and dead-code removal (onnxscript's optimiser)
    sample_videos: tuple[Path, ...] = ()  # real inputs for the parity check (default: a generated clip)
    calibration_videos: tuple[Path, ...] = ()  # int8 calibration set
    calibration_clips: int = 64
    queue_delay_us: int = 2000  # Triton dynamic batching: how long a request may wait for company
    instances: int = 1  # Triton model instances per device
    cpu_threads: int = 0  # ONNX Runtime intra-op threads in the Python backend; 0 = its default
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    workspace_bytes: int = 4 << 30  # TensorRT builder workspace
    vocabulary: Path | None = None  # a WordPiece text tower's vocab.txt (default: beside the checkpoint)

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out", Path(self.out))
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", Path(self.vocabulary))
        object.__setattr__(self, "sample_videos", tuple(Path(p) for p in self.sample_videos))
        object.__setattr__(self, "calibration_videos", tuple(Path(p) for p in self.calibration_videos))
        if self.target not in get_args(Target):
            raise ConfigError(f"export: target must be one of {get_args(Target)}, got {self.target!r}")
        if self.precision not in get_args(Precision):
            raise ConfigError(f"export: precision must be one of {get_args(Precision)}, "
                              f"got {self.precision!r}")
        positive = {"max-batch": self.max_batch, "calibration-clips": self.calibration_clips,
                    "instances": self.instances}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"export: --{name} must be at least 1, got {value}")
        if self.version is not None and self.version < 1:
            raise ConfigError(f"export: --version must be at least 1, got {self.version}")
        if self.opset < MIN_OPSET:
            raise ConfigError(f"export: --opset must be at least {MIN_OPSET}, got {self.opset}")
        if self.queue_delay_us < 0 or self.cpu_threads < 0:
            raise ConfigError("export: queue delay and CPU threads must not be negative")
        if self.target == "cpu" and self.precision != "fp32":
            raise ConfigError(f"export: --target cpu serves fp32 only (ONNX Runtime on the CPU); "
                              f"{self.precision} is a TensorRT precision, use --target gpu")
        if self.precision == "int8" and not self.calibration_videos:
            raise ConfigError("export: int8 needs a calibration set: pass --calibration-videos with a few "
                              "videos like the ones you will serve")

    @property
    def opt_batch(self) -> int:
        """The batch size TensorRT tunes for and Triton prefers: the largest power of two ≤ half the
        maximum, so that a busy server fills it (1 when the maximum is 1)."""
        return max(1, 1 << max(0, (self.max_batch // 2).bit_length() - 1))

    @property
    def vocabulary_path(self) -> Path:
        """The text tower's vocabulary file, for models that bring their own (InternVideo2)."""
        return self.vocabulary if self.vocabulary is not None else self.checkpoint.parent / "vocab.txt"

    def check_inputs_exist(self) -> None:
        """Fail before any work when a named file is missing."""
        if not self.checkpoint.is_file():
            raise CheckpointError(f"{self.checkpoint}: no such checkpoint file")
        named = [("sample video", p) for p in self.sample_videos]
        named += [("calibration video", p) for p in self.calibration_videos]
        for kind, path in named:
            if not path.is_file():
                raise ConfigError(f"export: {kind} {path} does not exist or is not a file")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"export: --out {self.out} exists and is not a directory")
