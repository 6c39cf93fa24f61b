"""The torch runtime (PyTorch in-process) against the embedded ONNX Runtime one, on the same exports.

Here it runs on the CPU in fp32 (same code as on a GPU, without the CUDA graphs); the fp16/bf16 and
CUDA-graph paths run under `@pytest.mark.gpu`. The GPU-or-CPU choice and its refusals run for real on
this machine, which has no CUDA: `gpu = "auto"` falls back, `gpu = "required"` refuses.
"""

import json
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from vidsearch.errors import GpuUnavailableError, ModelFormatError
from vidsearch.runtime import ModelRuntime, ModelSpec, RuntimeConfig, open_runtime, read_repository
from vidsearch.runtime.choice import cuda_problem
from vidsearch.runtime.facts import RuntimeChoice
from vidsearch.runtime.torch_backend import TorchBackend, batch_sizes

from .models import MAX_BATCH, Repository

QUERIES = ["a red circle moves to the left", "a blue square grows", "the green cross stays still",
           "two shapes", "nothing at all"]


def _config(repository: Path, **values: object) -> RuntimeConfig:
    return RuntimeConfig.model_validate({"model_repository": repository, "threads": 1, **values})


@pytest.fixture(scope="module")
def runtimes(repository: Repository) -> Iterator[tuple[ModelRuntime, ModelRuntime]]:
    with open_runtime(_config(repository.path, kind="torch", gpu="off")) as torch_rt, \
            open_runtime(_config(repository.path)) as ort_rt:
        yield torch_rt, ort_rt


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_torch_runtime_equals_the_embedded_runtime_per_row(
        runtimes: tuple[ModelRuntime, ModelRuntime]) -> None:
    torch_rt, ort_rt = runtimes
    assert (torch_rt.kind, torch_rt.choice.device, torch_rt.choice.dtype) == ("torch", "cpu", "float32")
    assert torch_rt.facts == ort_rt.facts  # same models, versions, checksums, widths, batch limits
    text = torch_rt.embed_text(QUERIES)
    assert text.shape == (5, 32)
    assert text.dtype == np.float32
    assert _cosines(text, ort_rt.embed_text(QUERIES)).min() >= 0.9999
    rng = np.random.default_rng(0)
    # 7 clips: one full batch of 4 and a batch of 3 padded to 4
    clips = rng.standard_normal((7, 8, 3, 32, 32)).astype(np.float32)
    video = torch_rt.embed_video(clips)
    assert video.shape == (7, 32)
    assert _cosines(video, ort_rt.embed_video(clips)).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(video, axis=1), 1.0, atol=1e-5)
    videos = rng.standard_normal((3, 3, 4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(torch_rt.classify(videos), ort_rt.classify(videos), atol=1e-4)


def test_padding_to_a_fixed_batch_size_leaves_each_row_as_it_was(runtimes: tuple[ModelRuntime, ModelRuntime],
                                                                  ) -> None:
    torch_rt, _ = runtimes
    clips = np.random.default_rng(1).standard_normal((3, 8, 3, 32, 32)).astype(np.float32)
    one_by_one = np.concatenate([torch_rt.embed_video(clips[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(torch_rt.embed_video(clips), one_by_one, atol=1e-5)


def test_batch_sizes_are_powers_of_two_up_to_the_models_limit() -> None:
    assert batch_sizes(1) == (1,)
    assert batch_sizes(MAX_BATCH) == (1, 2, 4)
    assert batch_sizes(24) == (1, 2, 4, 8, 16, 24)


def test_shipped_demo_model_gives_the_embedded_runtimes_vectors(demo_repository: Path) -> None:
    with open_runtime(_config(demo_repository, kind="torch", gpu="off")) as torch_rt, \
            open_runtime(_config(demo_repository)) as ort_rt:
        assert _cosines(torch_rt.embed_text(QUERIES), ort_rt.embed_text(QUERIES)).min() >= 0.9999
        clips = np.random.default_rng(2).standard_normal((5, 8, 3, 64, 64)).astype(np.float32)
        assert _cosines(torch_rt.embed_video(clips), ort_rt.embed_video(clips)).min() >= 0.9999


def test_auto_without_a_gpu_runs_the_embedded_runtime_and_says_why(repository: Repository) -> None:
    problem = cuda_problem()
    assert problem is not None  # this machine has no CUDA GPU
    for kind in ("auto", "torch"):
        with open_runtime(_config(repository.path, kind=kind)) as runtime:
            assert (runtime.kind, runtime.choice.device) == ("embedded", "cpu")
            assert problem in runtime.choice.reason
            assert 'gpu = "auto"' in runtime.choice.reason


def test_auto_with_gpu_off_runs_the_embedded_runtime(repository: Repository) -> None:
    with open_runtime(_config(repository.path, kind="auto", gpu="off")) as runtime:
        assert (runtime.kind, runtime.choice.reason) == ("embedded", 'gpu = "off"')


def test_gpu_required_without_a_gpu_refuses_to_start_and_says_why(repository: Repository) -> None:
    for kind in ("auto", "torch"):
        refusal = f'gpu = "required" and no GPU runtime can start: {cuda_problem()}'
        with pytest.raises(GpuUnavailableError, match=re.escape(refusal)):
            open_runtime(_config(repository.path, kind=kind, gpu="required"))


def test_gpu_out_of_memory_at_start_is_a_reason_to_fall_back(repository: Repository,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU that cannot hold the models: `auto` falls back naming the cause, `required` refuses."""
    import vidsearch.runtime.choice as choice

    def no_memory(*args: object, **kwargs: object) -> TorchBackend:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(choice, "cuda_problem", lambda: None)  # pretend a GPU is visible
    monkeypatch.setattr("vidsearch.runtime.torch_backend.TorchBackend", no_memory)
    with open_runtime(_config(repository.path, kind="torch")) as runtime:
        assert runtime.kind == "embedded"
        assert "not enough GPU memory" in runtime.choice.reason
        assert "2.00 GiB" in runtime.choice.reason
    with pytest.raises(GpuUnavailableError, match="not enough GPU memory"):
        open_runtime(_config(repository.path, kind="torch", gpu="required"))


def test_damaged_or_missing_weights_are_refused(repository: Repository, tmp_path: Path) -> None:
    copy = tmp_path / "repository"
    shutil.copytree(repository.path, copy)
    text = read_repository(_config(copy)).text
    assert text is not None
    assert text.description.weights is not None
    weights = text.directory / text.description.weights.file
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelFormatError, match="does not match the sha256"):
        open_runtime(_config(copy, kind="torch", gpu="off"))
    description = text.directory / "vidsearch.json"
    data = json.loads(description.read_text())
    del data["weights"]
    description.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="no PyTorch weights"):
        open_runtime(_config(copy, kind="torch", gpu="off"))


def test_auto_on_a_gpu_serves_an_export_without_torch_weights_on_the_cpu(
        repository: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repository exported before the torch runtime: `auto` falls back, naming the cause."""
    import vidsearch.runtime.choice as choice

    copy = tmp_path / "repository"
    shutil.copytree(repository.path, copy)
    for description in copy.glob("*/*/vidsearch.json"):
        data = json.loads(description.read_text())
        data.pop("weights", None)
        description.write_text(json.dumps(data))
    monkeypatch.setattr(choice, "cuda_problem", lambda: None)  # pretend a GPU is visible
    with open_runtime(_config(copy, kind="auto")) as runtime:
        assert runtime.kind == "embedded"
        assert "cannot load this repository" in runtime.choice.reason
        assert "no PyTorch weights" in runtime.choice.reason


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_graphs_in_half_precision_match_the_cpu_export(repository: Repository, dtype: str) -> None:
    with open_runtime(_config(repository.path, kind="torch", gpu="required", dtype=dtype)) as gpu_rt, \
            open_runtime(_config(repository.path)) as ort_rt:
        assert gpu_rt.choice.device.startswith("cuda")
        assert gpu_rt.choice.dtype == dtype
        clips = np.random.default_rng(3).standard_normal((7, 8, 3, 32, 32)).astype(np.float32)
        for _ in range(2):  # the second call replays the graphs captured at start
            assert _cosines(gpu_rt.embed_text(QUERIES), ort_rt.embed_text(QUERIES)).min() >= 0.999
            assert _cosines(gpu_rt.embed_video(clips), ort_rt.embed_video(clips)).min() >= 0.999


class _TimedBackend:
    """A backend that answers after a fixed delay, for the start-up race (no GPU runs here)."""

    def __init__(self, kind: str, delay_s: float) -> None:
        self.kind, self.delay_s, self.closed, self.calls = kind, delay_s, False, 0
        self.decodes_video = False

    def infer(self, model: ModelSpec, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              timeout_s: float | None) -> dict[str, np.ndarray]:
        self.calls += 1
        time.sleep(self.delay_s)
        return {name: np.zeros((1, 32), np.float32) for name in outputs}

    def ready(self, model: ModelSpec) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("torch_delay_s", "ort_delay_s", "winner"), [(0.001, 0.004, "torch"),
                                                                       (0.004, 0.001, "embedded")])
def test_auto_times_torch_against_onnx_runtimes_gpu_provider_and_keeps_the_faster(
        repository: Repository, monkeypatch: pytest.MonkeyPatch, torch_delay_s: float, ort_delay_s: float,
        winner: str) -> None:
    import vidsearch.runtime.choice as choice
    import vidsearch.runtime.embedded as embedded

    on_torch, on_ort = _TimedBackend("torch", torch_delay_s), _TimedBackend("embedded", ort_delay_s)
    providers: list[Sequence[str]] = []

    def ort_backend(models: object, threads: int, given: Sequence[str]) -> _TimedBackend:
        providers.append(given)
        return on_ort

    monkeypatch.setattr(choice, "cuda_problem", lambda: None)
    monkeypatch.setattr(choice, "ort_gpu_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(choice, "_torch", lambda models, config, device, reason: (
        on_torch, RuntimeChoice("torch", device, "float16", reason)))
    monkeypatch.setattr(embedded, "EmbeddedBackend", ort_backend)
    runtime = open_runtime(_config(repository.path, kind="auto"))
    assert providers == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
    assert on_torch.calls > 1
    assert on_ort.calls > 1
    assert (runtime.kind, runtime.choice.device) == (winner, "cuda:0")
    assert "one-item call: torch" in runtime.choice.reason
    loser = on_ort if winner == "torch" else on_torch
    assert loser.closed
    runtime.close()
