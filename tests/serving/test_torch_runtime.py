"""The torch runtime behind the real service: a `vidsearch serve` process on it finds what the embedded
runtime finds, reports its choice, refuses a required GPU it lacks, and survives GPU out-of-memory."""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.client import SearchClient
from vidsearch.errors import EXIT_NO_GPU
from vidsearch.runtime.torch_backend import Tower
from vidsearch.serving import SearchServer

from ..runtime.models import SCENE_S, Repository, shared_demo_repository
from .conftest import VIDEOS, Media, settings_for
from .test_cli import VIDSEARCH, _wait_for_start

QUERIES = ("a red circle moving left", "a blue square growing", "a green triangle moving up",
           "a yellow cross spinning")


@pytest.fixture(scope="module")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_demo_repository(tmp_path_factory)


@pytest.fixture
def torch_server(demo_repository: Path, media: Media, tmp_path: Path) -> Iterator[str]:
    """`vidsearch serve --runtime torch --gpu off` as a real process; yields its gRPC address."""
    env = {**os.environ, "VIDSEARCH_LOG_LEVEL": "INFO", "VIDSEARCH_HTTP__PORT": "0",  # any free port
           "VIDSEARCH_VIDEO__CLIP_LENGTH_S": str(SCENE_S)}  # as `settings_for` gives the embedded server
    command = [*VIDSEARCH, "serve", "--port", "0", "--metrics-port", "0",
               "--index", str(tmp_path / "index"), "--allowed-root", str(media.root),
               "--model-repository", str(demo_repository), "--runtime", "torch", "--gpu", "off"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        started = _wait_for_start(process, 90)
        assert "runtime torch on cpu, float32" in started
        yield started
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _top_hits(client: SearchClient) -> list[tuple[str, float]]:
    outcomes = client.ingest(list(VIDEOS))
    assert all(o.clips for o in outcomes), outcomes
    found = []
    for query in QUERIES:
        hit = client.search(query, top_k=1).hits[0]
        found.append((hit.clip_id, hit.score))
    return found


def test_serve_on_the_torch_runtime_finds_the_embedded_runtimes_top_clip(
        torch_server: str, demo_repository: Path, media: Media, tmp_path: Path) -> None:
    address = torch_server.split(" on ")[1].split(" ")[0]
    with SearchClient(address) as client:
        on_torch = _top_hits(client)
        stats = client.index_stats()
        assert (stats.runtime, stats.runtime_device, stats.runtime_dtype) == ("torch", "cpu", "float32")
        assert stats.runtime_reason == 'configured (runtime torch, gpu = "off")'
    page = torch_server.split("the page and HTTP API on ")[1]
    web = httpx.get(f"{page.rstrip('/')}/v1/stats", timeout=10).json()
    assert (web["runtime"], web["runtime_device"], web["runtime_dtype"]) == ("torch", "cpu", "float32")
    repository = Repository(demo_repository, None, None)  # type: ignore[arg-type]  # only the path is read
    settings = settings_for(repository, media, tmp_path / "embedded-index")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        on_embedded = _top_hits(client)
        assert client.index_stats().runtime == "embedded"
    assert [clip for clip, _ in on_torch] == [clip for clip, _ in on_embedded]
    np.testing.assert_allclose([s for _, s in on_torch], [s for _, s in on_embedded], atol=1e-4)


def test_serve_refuses_a_required_gpu_it_lacks_with_its_own_exit_status(repository: Repository,
                                                                        tmp_path: Path) -> None:
    arguments = ["serve", "--port", "0", "--metrics-port", "0", "--http-port", "0", "--index",
                 str(tmp_path / "index"), "--model-repository", str(repository.path), "--runtime", "auto",
                 "--gpu", "required"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == EXIT_NO_GPU, result.output
    assert 'error: gpu = "required" and no GPU runtime can start: this PyTorch' in result.output


def test_gpu_out_of_memory_fails_that_request_and_the_server_keeps_serving(
        repository: Repository, media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault-injected torch runtime raises CUDA's out-of-memory error on one model run."""
    run = Tower.run
    faults = [True]

    def out_of_memory_once(self: Tower, batch: np.ndarray) -> Any:
        if faults:
            faults.pop()
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return run(self, batch)

    settings = settings_for(repository, media, tmp_path / "index", runtime={"kind": "torch", "gpu": "off"})
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        client.ingest([VIDEOS[0]])
        monkeypatch.setattr(Tower, "run", out_of_memory_once)
        with pytest.raises(grpc.RpcError) as failed:
            client.search("a red circle moving left", top_k=1)
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ran out of memory" in (failed.value.details() or "")
        assert client.search("a red circle moving left", top_k=1).hits  # the same query now succeeds
        assert client.health() == "SERVING"
        assert client.ingest([VIDEOS[1]])[0].clips > 0
