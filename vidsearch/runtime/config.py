"""How to run the models: which runtime, over which exported repository, with which batching and cache.

A typed, frozen pydantic model, so the server's settings (`vidsearch.serving.settings`) embed it as
one section and a library caller can build it directly; it is parsed once, at the edge.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vidsearch.formats.model_repository import CLASSIFIER_MODEL, TEXT_MODEL, VISION_MODEL

RuntimeKind = Literal["auto", "embedded", "torch", "triton"]
GpuPolicy = Literal["auto", "required", "off"]


class RuntimeConfig(BaseModel):
    """The runtime section of the settings; every field has a working default for the embedded runtime."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # auto: a GPU runtime when a GPU can run one (the torch runtime, or ONNX Runtime's CUDA/TensorRT
    # provider when it is faster there), the embedded CPU runtime otherwise (see `runtime.choice`)
    kind: RuntimeKind = "embedded"
    # auto: use a GPU when one starts, else say why and run on the CPU; required: refuse to start
    # without one; off: never touch a GPU (the torch runtime runs on the CPU in fp32)
    gpu: GpuPolicy = "auto"
    dtype: Literal["float16", "bfloat16"] = "float16"  # the torch runtime's dtype on a GPU (CPU: fp32)
    cuda_graphs: bool = True  # the torch runtime on a GPU: replay each (tower, batch size) as a CUDA graph
    model_repository: Path = Path("model_repository")
    text_model: str = TEXT_MODEL
    vision_model: str = VISION_MODEL
    classifier_model: str = CLASSIFIER_MODEL
    # Text queries from concurrent requests are run together: at most `max_batch` (default: the
    # model's own maximum) and waiting at most `max_delay_ms` for company once the model is free.
    max_batch: int | None = Field(default=None, ge=1)
    max_delay_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    # recent text embeddings kept (LRU), in bytes with their texts: 32 MiB holds ~13,000 512-d vectors of
    # short queries; 0 switches the cache off
    cache_bytes: int = Field(default=32 << 20, ge=0)
    threads: int = Field(default=0, ge=0)  # ONNX Runtime (or CPU PyTorch) intra-op threads; 0: default
    triton_url: str = "127.0.0.1:8001"  # gRPC address of the Triton server (kind "triton")
    # how long to wait for the Triton server at start, and the longest a model call may take
    triton_timeout_s: float = Field(default=60.0, gt=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> "RuntimeConfig":
        if self.gpu == "required" and self.kind == "embedded":
            raise ValueError('runtime "embedded" runs on the CPU, so gpu = "required" cannot hold: '
                             'use runtime "auto" or "torch"')
        return self
