"""Choosing the backend: the configured one, or with `kind = "auto"` the fastest this machine can start.

`auto` takes a GPU runtime when a GPU is there — the torch runtime (fp16/bf16, CUDA graphs), or ONNX
Runtime with its TensorRT or CUDA execution provider where such a build is installed and it answers a
one-item call faster than torch on this GPU (both are timed at start) — and the embedded CPU runtime
otherwise. The `gpu` setting governs failure: a GPU runtime that cannot start (no CUDA, a driver
mismatch, not enough memory) raises `GpuUnavailableError` saying why; under `gpu = "auto"` the service
then runs the embedded CPU runtime and reports why, under `gpu = "required"` it refuses to start.
Every choice is a `RuntimeChoice` (runtime, device, dtype, reason), logged and reported by GetIndexStats.
"""

import logging
import time
from collections.abc import Callable

import numpy as np

from vidsearch.errors import GpuUnavailableError, MissingDependencyError, ModelFormatError
from vidsearch.runtime.base import Backend
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.runtime.facts import RuntimeChoice
from vidsearch.runtime.repository import RepositoryModels

log = logging.getLogger(__name__)

GPU_DEVICE = "cuda:0"
ORT_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")  # preferred first
_TIMED_CALLS = 20


def cuda_problem() -> str | None:
    """Why PyTorch cannot run on a GPU here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available():
        try:
            torch.cuda.init()  # raises with the driver's own words (e.g. a driver too old for this CUDA)
        except Exception as err:
            return f"CUDA does not start: {err}"
        return "no CUDA device is visible"
    return None


def ort_gpu_providers() -> list[str]:
    """The GPU execution providers of the installed ONNX Runtime (none in the CPU build)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    available = ort.get_available_providers()
    return [name for name in ORT_GPU_PROVIDERS if name in available]


def open_backend(models: RepositoryModels, config: RuntimeConfig) -> tuple[Backend, RuntimeChoice]:
    """The backend the config asks for, started, and the record of the choice."""
    if config.kind == "triton":
        from vidsearch.runtime.triton import TritonBackend

        return (TritonBackend(models, config.triton_url, config.triton_timeout_s),
                RuntimeChoice("triton", config.triton_url, "", "configured (runtime triton)"))
    if config.kind == "embedded":
        return _embedded(models, config, "configured (runtime embedded)")
    if config.gpu == "off":
        if config.kind == "auto":
            return _embedded(models, config, 'gpu = "off"')
        return _torch(models, config, "cpu", 'configured (runtime torch, gpu = "off")')
    try:
        return _gpu_backend(models, config)
    except GpuUnavailableError as err:
        if config.gpu == "required":
            raise GpuUnavailableError(f'gpu = "required" and no GPU runtime can start: {err}') from err
        log.warning("no GPU runtime: %s; running the embedded CPU runtime (gpu = \"auto\")", err)
        return _embedded(models, config, f"no GPU runtime ({err}); gpu = \"auto\" falls back to the CPU")


def _embedded(models: RepositoryModels, config: RuntimeConfig, reason: str) -> tuple[Backend, RuntimeChoice]:
    from vidsearch.runtime.embedded import EmbeddedBackend

    return EmbeddedBackend(models, config.threads), RuntimeChoice("embedded", "cpu", "float32", reason)


def _torch(models: RepositoryModels, config: RuntimeConfig, device: str,
           reason: str) -> tuple[Backend, RuntimeChoice]:
    try:
        from vidsearch.runtime.torch_backend import TorchBackend
    except ImportError as err:
        raise MissingDependencyError("the torch runtime needs torch and safetensors") from err

    backend = TorchBackend(models, device, config.dtype, config.cuda_graphs, config.threads)
    return backend, RuntimeChoice("torch", device, backend.dtype_name, reason)


def _start_gpu(start: Callable[[], tuple[Backend, RuntimeChoice]],
               what: str) -> tuple[Backend, RuntimeChoice]:
    """Start a GPU backend; the errors of a GPU that cannot take it become `GpuUnavailableError`."""
    import torch

    try:
        return start()
    except torch.cuda.OutOfMemoryError as err:
        raise GpuUnavailableError(f"not enough GPU memory for {what}: {str(err).splitlines()[0]}") from err
    except RuntimeError as err:  # CUDA errors (driver, capture, kernels) arrive as RuntimeError
        raise GpuUnavailableError(f"{what} failed on the GPU: {str(err).splitlines()[0]}") from err


def _gpu_backend(models: RepositoryModels, config: RuntimeConfig) -> tuple[Backend, RuntimeChoice]:
    problem = cuda_problem()
    if problem is not None:
        raise GpuUnavailableError(problem)
    reason = "a CUDA GPU is available" if config.kind == "auto" else "configured (runtime torch)"
    try:
        best = _start_gpu(lambda: _torch(models, config, GPU_DEVICE, reason), "the torch runtime")
    except ModelFormatError as err:
        if config.kind != "auto":
            raise
        # e.g. a repository exported before the torch runtime: `auto` still serves it, on the CPU
        raise GpuUnavailableError(f"the torch runtime cannot load this repository ({err})") from err
    providers = ort_gpu_providers() if config.kind == "auto" else []
    if not providers:
        return best
    try:
        from vidsearch.runtime.embedded import EmbeddedBackend

        ort_backend: Backend = EmbeddedBackend(models, config.threads, [providers[0], "CPUExecutionProvider"])
    except Exception as err:  # an ORT GPU build that cannot run here is a finding, not a failure
        log.warning("ONNX Runtime %s did not start (%s); keeping the torch runtime", providers[0], err)
        return best
    torch_ms, ort_ms = time_backend(best[0], models), time_backend(ort_backend, models)
    timing = f"one-item call: torch {torch_ms:.2f} ms, onnxruntime {providers[0]} {ort_ms:.2f} ms"
    if ort_ms < torch_ms:
        best[0].close()
        return ort_backend, RuntimeChoice("embedded", GPU_DEVICE, "float32", f"faster on this GPU ({timing})")
    ort_backend.close()
    return best[0], RuntimeChoice(best[1].runtime, best[1].device, best[1].dtype,
                                  f"faster on this GPU ({timing})")


def time_backend(backend: Backend, models: RepositoryModels) -> float:
    """Median milliseconds of a one-item call of the first model (the text tower where there is one)."""
    model = next(m for m in (models.text, models.vision, models.classifier) if m is not None)
    spec = model.input
    feed = {spec.name: np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)}
    output = model.description.outputs[0].name
    times = []
    for _ in range(_TIMED_CALLS + 1):
        began = time.perf_counter()
        backend.infer(model, feed, [output], None)
        times.append(time.perf_counter() - began)
    return float(np.median(times[1:]) * 1e3)
