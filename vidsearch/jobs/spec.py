"""A batch embedding job, parsed once at the edge (the CLI) into this typed, frozen description."""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vidsearch.errors import ConfigError
from vidsearch.runtime import RuntimeConfig
from vidsearch.runtime.facts import RuntimeFacts
from vidsearch.video import ClipSpec, ReadOptions, ShotSpec

IDENTITY_VERSION = 1


@dataclass(frozen=True)
class EmbedJob:
    """What to embed, where to, with which model, and how to run it.

    Only the fields that change the output (input, clips, shots, dtype, model) make the job's identity;
    the engine, worker counts and batch sizes may differ between a run and its resumption.
    """

    input: str
    out: Path
    runtime: RuntimeConfig
    clips: ClipSpec = field(default_factory=ClipSpec)
    scenes: ShotSpec | None = None
    float16: bool = False
    engine: Literal["local", "ray"] = "local"
    decoder: Literal["auto", "pyav", "dali", "server"] = "auto"  # server: the Triton ensemble decodes
    workers: int = 1  # decoding processes (local engine): with DALI, each is one decoder session
    cpu_workers: int = 0  # local engine with DALI: PyAV decoding processes beside the DALI ones
    batch_size: int | None = None  # clips per model call (default: the model's maximum batch)
    queue_clips: int = 16  # decoded clips waiting for the model, at most (backpressure)
    shard_clips: int = 8192  # clips per shard commit (the last shard may hold fewer)
    read: ReadOptions = field(default_factory=lambda: ReadOptions(on_clip_error="skip"))
    actors: int = 1  # Ray: model actors
    num_gpus: float = 0.0  # Ray: GPUs per model actor
    decode_gpus: float = 0.25  # Ray: GPUs per decoding task when DALI decodes on a GPU
    ray_address: str | None = None  # Ray: cluster to join (default: RAY_ADDRESS, else a local instance)
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if min(self.workers, self.queue_clips, self.shard_clips, self.actors, self.batch_size or 1) < 1:
            raise ConfigError("embed: workers, queue, shard size, actors and batch size must be at least 1")
        if self.num_gpus < 0:
            raise ConfigError(f"embed: --num-gpus must not be negative, got {self.num_gpus}")
        if self.cpu_workers < 0 or not 0 < self.decode_gpus <= 1:
            raise ConfigError(f"embed: --cpu-workers must not be negative and --decode-gpus must be in "
                              f"(0, 1], got {self.cpu_workers} and {self.decode_gpus}")

    def identity(self, facts: RuntimeFacts) -> dict[str, Any]:
        """What a resumed run must share with the first: anything else would mix two outputs."""
        from vidsearch.jobs.inputs import identity_of

        vision = facts.vision
        assert vision is not None
        assert vision.preprocess is not None
        return {
            "version": IDENTITY_VERSION,
            "input": identity_of(self.input),
            "clips": asdict(self.clips),
            "scenes": asdict(self.scenes) if self.scenes is not None else None,
            "dtype": "float16" if self.float16 else "float32",
            "model": facts.model_name,
            "model_checksum": facts.model_checksum,
            "preprocess": vision.preprocess.digest(),
        }
