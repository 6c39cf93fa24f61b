"""Request limits and security on real servers (issue 18): health under load, authentication before
parsing and its audit, the upload budget, per-request clip and memory limits, the tokenizer under
concurrent long queries, and the warnings of a risky setup."""

import logging
import random
import statistics
import string
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from vidsearch.client import SearchClient
from vidsearch.runtime import RuntimeConfig, read_repository
from vidsearch.runtime.facts import ModelFacts
from vidsearch.serving import SearchServer
from vidsearch.serving.exposure import exposure_warnings
from vidsearch.serving.media import request_bytes
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc
from vidsearch.video import ClipSpec, probe, segment

from ..runtime.models import Repository
from .conftest import Media, settings_for

TOKEN = "hardening-token"
SIGNED = (("authorization", f"Bearer {TOKEN}"),)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()  # type: ignore[operator]
    return error.value.code()


def test_health_and_reflection_are_never_refused_under_load(repository: Repository, media: Media,
                                                             tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index", limits={"max_concurrent_rpcs": 1})
    with SearchServer(settings) as server, grpc.insecure_channel(server.address) as channel:
        stop = threading.Event()
        codes: list[str] = []

        def load() -> None:
            stub = pb_grpc.SearchServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.EmbedVideo(iter([pb.EmbedVideoRequest(path="clip-0.mp4")]), timeout=10)
                    codes.append("OK")
                except grpc.RpcError as err:
                    codes.append(err.code().name)

        clients = [threading.Thread(target=load) for _ in range(24)]  # 24 clients; 5 handler threads
        for client in clients:
            client.start()
        try:
            health = health_pb2_grpc.HealthStub(channel)
            probes = [health.Check(health_pb2.HealthCheckRequest(), timeout=5).status for _ in range(100)]
            services = ProtoReflectionDescriptorDatabase(channel).get_services()
        finally:
            stop.set()
            for client in clients:
                client.join(30)
    assert probes == [health_pb2.HealthCheckResponse.SERVING] * 100
    assert "vidsearch.v1.SearchService" in services
    assert "RESOURCE_EXHAUSTED" in codes  # the load did fill the server
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}


@pytest.fixture
def guarded(repository: Repository, media: Media, tmp_path: Path) -> Iterator[SearchServer]:
    settings = settings_for(repository, media, tmp_path / "index", auth={"tokens": [TOKEN]})
    with SearchServer(settings) as server:
        yield server


def test_authentication_comes_before_parsing_and_failures_are_counted(
        guarded: SearchServer, caplog: pytest.LogCaptureFixture) -> None:
    with grpc.insecure_channel(guarded.address) as channel, caplog.at_level(logging.INFO):
        search = channel.unary_unary("/vidsearch.v1.SearchService/Search")
        malformed = b"\x0a\xff\xff\xff\xff\x0f garbage"
        for _ in range(200):
            assert _code(lambda: search(malformed, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
            assert _code(lambda: search(malformed, timeout=5, metadata=(("authorization", "Bearer wrong"),))
                         ) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as signed:
            search(malformed, timeout=5, metadata=SIGNED)
        assert signed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the request is not a valid message" in (signed.value.details() or "")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    audit = [r for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(audit) == 1  # 400 failures, one line (then one per 10 s)
    assert "Search from ipv" in audit[0].getMessage()
    assert guarded.metrics.auth_failures.labels("Search")._value.get() == 400


def test_uploads_in_flight_share_one_budget(repository: Repository, media: Media, tmp_path: Path) -> None:
    video = media.videos[0].read_bytes()
    settings = settings_for(repository, media, tmp_path / "index",
                            limits={"max_upload_bytes_in_flight": len(video) * 3 // 2})
    release = threading.Event()
    with SearchServer(settings) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.SearchServiceStub(channel)
        outcome: dict[str, int] = {}

        def held_upload() -> Iterator[pb.EmbedVideoRequest]:
            yield pb.EmbedVideoRequest(chunk=video)
            release.wait(20)  # the bytes stay held while the stream is open

        def first() -> None:
            outcome["clips"] = len(stub.EmbedVideo(held_upload(), timeout=30).clips)

        holder = threading.Thread(target=first)
        holder.start()
        uploads = server._servicer._uploads  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while uploads.used < len(video) and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as refused:
            stub.EmbedVideo(iter([pb.EmbedVideoRequest(chunk=video)]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_upload_bytes_in_flight" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as by_video:
            stub.SearchByVideo(pb.SearchByVideoRequest(video=video), timeout=10)
        assert by_video.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        release.set()
        holder.join(30)
        assert outcome["clips"] == 3
        assert uploads.used == 0  # every request gave back what it held
        assert len(stub.EmbedVideo(iter([pb.EmbedVideoRequest(chunk=video)]), timeout=10).clips) == 3


def _vision(repository: Repository) -> ModelFacts:
    config = RuntimeConfig(model_repository=repository.path)
    vision = read_repository(config).facts(config).vision
    assert vision is not None
    return vision


def test_clips_per_request_and_memory_are_bounded(repository: Repository, media: Media,
                                                  tmp_path: Path) -> None:
    # the tiny model: 3 clips need ~600 kB (mostly a batch of input and its stacked copy), 12 more;
    # 64 kB for the frames the clip being read holds
    budget = request_bytes(3, _vision(repository)) + 65_536
    settings = settings_for(repository, media, tmp_path / "index",
                            limits={"max_clips_per_request": 20, "max_request_bytes": budget})
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        with pytest.raises(grpc.RpcError) as many:
            client.embed_video(path="clip-0.mp4", clip_length_s=0.2)
        assert many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "would make up to 31 clips; the limit is 20 (limits.max_clips_per_request)" in (
            many.value.details() or "")
        result = client.ingest(["clip-1.mp4"], clip_length_s=0.2)
        assert "limits.max_clips_per_request" in result[0].error
        with pytest.raises(grpc.RpcError) as heavy:
            client.embed_video(path="clip-0.mp4", clip_length_s=0.5)  # 12 clips: within the count
        assert heavy.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "(limits.max_request_bytes)" in (heavy.value.details() or "")
        assert len(client.embed_video(path="clip-0.mp4").embeddings) == 3  # 3 clips fit
        assert server.metrics.in_flight._value.get() == 0


def test_decoded_frames_count_against_the_request_budget(repository: Repository, media: Media,
                                                         tmp_path: Path) -> None:
    """Long clips at a short stride pass the count and the estimate made before decoding, but keep many
    clips open, holding their decoded frames: those are counted as they are decoded, and the request
    stops with RESOURCE_EXHAUSTED at the budget instead of growing past it."""
    path = media.videos[0]
    clips = len(segment(probe(path), ClipSpec(4.0, 0.2)))
    budget = request_bytes(clips, _vision(repository)) + 16_384  # five 32×32 frames
    settings = settings_for(repository, media, tmp_path / "index", limits={"max_request_bytes": budget})
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        with pytest.raises(grpc.RpcError) as held:
            client.embed_video(path=path.name, clip_length_s=4.0, clip_stride_s=0.2)
        assert held.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = held.value.details() or ""
        assert "decoded frames" in details
        assert "(limits.max_request_bytes)" in details
        assert len(client.embed_video(path=path.name).embeddings) == 3  # clips that overlap nothing fit
        assert client.health() == "SERVING"


@pytest.mark.slow
def test_long_queries_do_not_stall_short_ones(repository: Repository, media: Media, tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index")
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        def latency(text: str) -> float:
            started = time.perf_counter()
            client.search(text)
            return time.perf_counter() - started

        alone = statistics.median(latency(f"a short query {i}") for i in range(20))
        stop = threading.Event()

        def long_queries(seed: int) -> None:
            with SearchClient(server.address) as other:
                rng = random.Random(seed)
                while not stop.is_set():  # 1,000 random letters, no space: ~0.5 s of BPE as one word
                    other.search("".join(rng.choice(string.ascii_lowercase) for _ in range(1000)))

        senders = [threading.Thread(target=long_queries, args=(seed,)) for seed in (3, 5, 11, 13)]
        for sender in senders:
            sender.start()
        try:
            time.sleep(0.3)
            loaded = statistics.median(latency(f"another short query {i}") for i in range(20))
        finally:
            stop.set()
            for sender in senders:
                sender.join(30)
    # before the tokenizer was bounded, each long query held the tokenizer lock ~0.5 s
    assert loaded < alone + 0.1, (alone, loaded)


def test_risky_settings_are_warned_about(repository: Repository, media: Media, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_text("not really a key")
    key.chmod(0o644)
    cert = tmp_path / "server.crt"
    cert.write_text("not really a certificate")
    exposed = settings_for(repository, media, tmp_path / "index", host="0.0.0.0")
    problems = " | ".join(exposure_warnings(exposed))
    assert "serving on 0.0.0.0 without TLS" in problems
    assert "serving on 0.0.0.0 without tokens" in problems
    assert "/metrics is served on 0.0.0.0 over plain HTTP" in problems
    apart = settings_for(repository, media, tmp_path / "index", host="0.0.0.0", metrics_host="127.0.0.1",
                         tls={"cert": cert, "key": key}, auth={"tokens": [TOKEN]})
    assert exposure_warnings(apart) == [f"the TLS key {key} is readable by other users (chmod 600 it)"]
    key.chmod(0o600)
    assert exposure_warnings(apart) == []
    assert exposure_warnings(settings_for(repository, media, tmp_path / "index")) == []


def test_a_client_sending_its_token_in_plaintext_elsewhere_is_warned() -> None:
    with pytest.warns(UserWarning, match="sending a bearer token in plaintext to 10.1.2.3:50051"):
        SearchClient("10.1.2.3:50051", token=TOKEN).close()
    with pytest.warns(UserWarning, match="plaintext"):
        SearchClient("search.example.com:443", token=TOKEN).close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for quiet in ("127.0.0.1:50051", "localhost:50051", "[::1]:50051"):
            SearchClient(quiet, token=TOKEN).close()  # loopback
        SearchClient("10.1.2.3:50051").close()  # no token to leak
    assert caught == []


def test_metrics_can_listen_apart_from_the_service(repository: Repository, media: Media,
                                                   tmp_path: Path) -> None:
    settings = settings_for(repository, media, tmp_path / "index", metrics_host="127.0.0.2")
    with SearchServer(settings) as server:
        port = server.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as response:
            assert b"vidsearch_auth_failures" in response.read()
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
