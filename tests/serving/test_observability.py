"""Health, Prometheus metrics and structured logs of a real server."""

import json
import logging
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidsearch.client import SearchClient
from vidsearch.serving import SearchServer
from vidsearch.serving import server as server_module
from vidsearch.serving.logs import JsonFormatter

from ..runtime.models import Repository
from .conftest import Media, settings_for


def _scrape(port: int | None) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+?(?:\{[^}]*\})?) (\S+)", line)
        if match and not line.startswith("#"):
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_metrics_count_requests_batches_and_the_index(repository: Repository, media: Media, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(repository, media, tmp_path / "index")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        client.ingest(["clip-0.mp4", "clip-1.mp4"])
        client.search("a red circle")
        client.search("a red circle")  # from the text cache
        caplog.set_level(logging.INFO, logger="vidsearch.serving.interceptors")
        with pytest.raises(grpc.RpcError):
            client.search("")
        samples = _scrape(server.metrics_port)
    assert samples['vidsearch_requests_total{code="OK",method="Search"}'] == 2
    assert samples['vidsearch_requests_total{code="INVALID_ARGUMENT",method="Search"}'] == 1
    assert samples['vidsearch_requests_total{code="OK",method="Ingest"}'] == 1
    assert samples['vidsearch_request_seconds_count{method="Search"}'] == 3
    assert samples["vidsearch_requests_in_flight"] == 0
    assert samples["vidsearch_index_clips"] == 6
    assert samples['vidsearch_model_batch_size_count{model="viclip_text"}'] == 1
    assert samples['vidsearch_model_batch_size_sum{model="viclip_vision"}'] == 6  # every clip embedded once
    assert samples["vidsearch_text_cache_hits_total"] == 1
    assert samples["vidsearch_text_cache_misses_total"] == 1
    refused = [r for r in caplog.records if getattr(r, "rpc", None) == "Search"]
    assert [(r.code, r.levelname) for r in refused] == [("INVALID_ARGUMENT", "INFO")]  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(refused[0]))
    assert line["rpc"] == "Search"
    assert line["code"] == "INVALID_ARGUMENT"
    assert line["ms"] >= 0
    assert line["peer"].startswith("ipv4:127.0.0.1:")


def test_health_follows_the_runtime_and_the_shutdown(repository: Repository, media: Media, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "HEALTH_POLL_S", 0.05)
    settings = settings_for(repository, media, tmp_path / "index")
    server = SearchServer(settings)
    server.start()
    channel = grpc.insecure_channel(server.address)
    stub = health_pb2_grpc.HealthStub(channel)

    def status(service: str) -> int:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    try:
        assert status("") == status("vidsearch.v1.SearchService") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            status("no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        runtime = server._runtime
        assert runtime is not None
        monkeypatch.setattr(runtime, "ready", lambda: False)  # e.g. the Triton server went away
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="vidsearch.v1.SearchService"), timeout=5)
        assert [next(watch).status for _ in range(2)] == [health_pb2.HealthCheckResponse.SERVING,
                                                         health_pb2.HealthCheckResponse.NOT_SERVING]
        watch.cancel()
    finally:
        server.stop(grace_s=0)
    with pytest.raises(grpc.RpcError) as gone:
        status("")
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
