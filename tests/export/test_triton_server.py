"""A real Triton server (tritonserver 2.51, Python backend, CPU) serving a `--target cpu` export,
queried over gRPC with tritonclient; its embeddings are checked against PyTorch."""

import queue
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tools.triton_server import TritonServer, find_triton
from vidsearch.errors import ExportError, MissingDependencyError
from vidsearch.export import triton_config
from vidsearch.export.graphs import graphs_for
from vidsearch.export.inputs import caption_tokens, real_inputs
from vidsearch.models.viclip import ViCLIP

from .conftest import MAX_BATCH, TRITON_ENV, TinyModel

pytestmark = pytest.mark.triton


@pytest.fixture
def client(triton_server: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton_server.url)


def _infer(client: grpcclient.InferenceServerClient, model: str, name: str, value: np.ndarray,
           datatype: str) -> dict[str, np.ndarray]:
    tensor = grpcclient.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    result = client.infer(model, [tensor])
    return {out: result.as_numpy(out) for out in ("EMBEDDING", "EMBEDDING_NORMALIZED")}


def _assert_close(got: np.ndarray, want: torch.Tensor) -> None:
    expected = want.numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_server_and_models_are_healthy_and_describe_themselves(
    client: grpcclient.InferenceServerClient, cpu_repository: Path
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_model_metadata("viclip_vision", as_json=True)
    assert metadata["platform"] == "python"
    assert metadata["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("FRAMES", "FP32", ["-1", "8", "3", "32", "32"])
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["EMBEDDING", "EMBEDDING_NORMALIZED"]
    for name in ("viclip_text", "viclip_vision"):
        assert client.is_model_ready(name)
        served = client.get_model_config(name).config
        written = triton_config.parse((cpu_repository / name / "config.pbtxt").read_text())
        assert served.max_batch_size == written.max_batch_size == MAX_BATCH
        assert served.dynamic_batching == written.dynamic_batching
        assert served.parameters["onnx_model"].string_value == "model.onnx"


def test_text_embeddings_match_pytorch(client: grpcclient.InferenceServerClient,
                                       tiny_viclip: TinyModel) -> None:
    tokens = caption_tokens(32)[:3]
    served = _infer(client, "viclip_text", "TOKENS", tokens, "INT64")
    assert isinstance(tiny_viclip.model, ViCLIP)
    with torch.inference_mode():
        expected = tiny_viclip.model.encode_text(torch.from_numpy(tokens))
    _assert_close(served["EMBEDDING"], expected)
    _assert_close(served["EMBEDDING_NORMALIZED"], torch.nn.functional.normalize(expected, dim=-1))
    np.testing.assert_allclose(np.linalg.norm(served["EMBEDDING_NORMALIZED"], axis=1), 1.0, rtol=1e-5)


def test_video_embeddings_of_decoded_clips_match_pytorch(
    client: grpcclient.InferenceServerClient, tiny_viclip: TinyModel
) -> None:
    _, vision = graphs_for(tiny_viclip.model)
    frames = real_inputs(vision, 2)["FRAMES"]
    served = _infer(client, "viclip_vision", "FRAMES", frames, "FP32")
    assert isinstance(tiny_viclip.model, ViCLIP)
    with torch.inference_mode():
        expected = tiny_viclip.model.encode_video(torch.from_numpy(frames))
    _assert_close(served["EMBEDDING"], expected)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    triton_server: TritonServer, tiny_viclip: TinyModel
) -> None:
    """Requests sent at once reach model.py together (dynamic batching); each gets its own rows back."""
    tokens = caption_tokens(32)
    stats = grpcclient.InferenceServerClient(triton_server.url)  # also sends the requests
    before = stats.get_inference_statistics("viclip_text").model_stats[0]
    answers: queue.Queue[tuple[int, grpcclient.InferResult | InferenceServerException]] = queue.Queue()

    def keep(index: int) -> Callable[[grpcclient.InferResult, InferenceServerException | None], None]:
        def callback(result: grpcclient.InferResult, error: InferenceServerException | None) -> None:
            answers.put((index, error or result))

        return callback

    for index in range(len(tokens)):
        tensor = grpcclient.InferInput("TOKENS", [1, 32], "INT64")
        tensor.set_data_from_numpy(tokens[index : index + 1])
        stats.async_infer("viclip_text", [tensor], keep(index))
    results = dict(answers.get(timeout=30) for _ in range(len(tokens)))
    assert isinstance(tiny_viclip.model, ViCLIP)
    with torch.inference_mode():
        expected = tiny_viclip.model.encode_text(torch.from_numpy(tokens))
    assert sorted(results) == list(range(len(tokens)))
    for index, result in results.items():
        assert isinstance(result, grpcclient.InferResult), result
        _assert_close(result.as_numpy("EMBEDDING"), expected[index : index + 1])
    after = stats.get_inference_statistics("viclip_text").model_stats[0]
    requests = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert requests == len(tokens)
    assert executions < requests


def test_a_failing_request_gets_an_error_and_the_server_carries_on(
    client: grpcclient.InferenceServerClient,
) -> None:
    tokens = caption_tokens(32)[:1].copy()
    tokens[0, 1] = 60_000  # outside the 49,408-entry vocabulary: the embedding lookup fails in ONNX Runtime
    with pytest.raises(InferenceServerException, match=r"Gather node.*idx=60000"):
        _infer(client, "viclip_text", "TOKENS", tokens, "INT64")
    wrong_shape = np.zeros((1, 16), dtype=np.int64)
    with pytest.raises(InferenceServerException, match=r"unexpected shape for input 'TOKENS'"):
        _infer(client, "viclip_text", "TOKENS", wrong_shape, "INT64")
    assert client.is_model_ready("viclip_text")
    again = _infer(client, "viclip_text", "TOKENS", caption_tokens(32)[:1], "INT64")
    assert again["EMBEDDING"].shape == (1, 32)


def test_a_server_that_cannot_load_its_models_fails_fast_with_its_log(cpu_repository: Path,
                                                                      tmp_path: Path) -> None:
    if not (TRITON_ENV / "bin" / "python").is_file():
        pytest.skip(f"no Triton server environment at {TRITON_ENV}: run `make triton-env`")
    broken = tmp_path / "repo"
    shutil.copytree(cpu_repository / "viclip_text", broken / "viclip_text")
    (broken / "viclip_text" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    server = TritonServer(find_triton(TRITON_ENV), broken, startup_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(ExportError, match=r"(?s)exited with status .*failed to load 'viclip_text'"):
        server.start()
    assert time.monotonic() - started < 30
    assert server.port is None  # stopped and cleaned up


def test_a_missing_server_environment_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match="make triton-env"):
        find_triton(tmp_path / "no-such-env")
