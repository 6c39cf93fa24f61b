"""TLS, bearer tokens, the concurrency limit and deadlines, on real servers."""

import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from vidsearch.client import SearchClient
from vidsearch.serving import SearchServer
from vidsearch.serving.interceptors import ServiceInterceptor
from vidsearch.serving.metrics import Metrics
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc
from vidsearch.training.synthetic import SynthSpec, plan, scene_frames, write_mp4

from ..runtime.models import Repository
from .conftest import Media, settings_for

TOKEN = "s3cret-token"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vidsearch test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "server.crt", folder / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file


@pytest.fixture
def secured(repository: Repository, media: Media, tmp_path: Path) -> Iterator[tuple[SearchServer, Path]]:
    cert, key = _self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# one per line\n{TOKEN}\nsecond-token\n")
    settings = settings_for(repository, media, tmp_path / "index", tls={"cert": cert, "key": key},
                            auth={"token_file": tokens})
    with SearchServer(settings) as server:
        yield server, cert


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()  # type: ignore[operator]
    return error.value.code()


def test_tls_and_tokens_guard_every_call_but_health(secured: tuple[SearchServer, Path]) -> None:
    server, cert = secured
    with SearchClient(server.address, root_certificate=cert, token=TOKEN) as client:
        assert client.ingest(["clip-0.mp4"])[0].clips == 3
        assert len(client.search("a shape", top_k=2).hits) == 2
    with SearchClient(server.address, root_certificate=cert, token="second-token") as client:
        assert client.index_stats().clips == 3
    with SearchClient(server.address, root_certificate=cert) as anonymous:
        assert anonymous.health() == "SERVING"  # load balancers probe without credentials
        with pytest.raises(grpc.RpcError) as refused:
            anonymous.search("a shape")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "missing or invalid bearer token" in (refused.value.details() or "")
    with SearchClient(server.address, root_certificate=cert, token="wrong") as wrong:
        assert _code(lambda: wrong.index_stats()) == grpc.StatusCode.UNAUTHENTICATED
    with SearchClient(server.address, root_certificate=cert, token=TOKEN) as client:
        assert len(client.search("a shape", top_k=2).hits) == 2  # a refusal is not remembered for others
    with SearchClient(server.address, timeout_s=3) as plaintext:
        assert _code(lambda: plaintext.health()) == grpc.StatusCode.UNAVAILABLE


def test_the_guard_of_a_method_is_built_once_per_authorization() -> None:
    interceptor = ServiceInterceptor([TOKEN], max_concurrent=4, metrics=Metrics())
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    def intercept(metadata: tuple[tuple[str, str], ...]) -> grpc.RpcMethodHandler | None:
        details = SimpleNamespace(method="/vidsearch.v1.SearchService/Search", invocation_metadata=metadata)
        return interceptor.intercept_service(lambda _: handler, details)  # type: ignore[arg-type]

    signed = intercept((("authorization", f"Bearer {TOKEN}"),))
    assert intercept((("authorization", f"Bearer {TOKEN}"),)) is signed
    anonymous = intercept(())
    assert anonymous is not signed
    assert intercept(()) is anonymous


def test_reflection_lists_the_services_to_a_client_with_a_token(secured: tuple[SearchServer, Path]) -> None:
    server, cert = secured
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    token = grpc.metadata_call_credentials(lambda context, callback: callback((("authorization",
                                                                                f"Bearer {TOKEN}"),), None))
    with_token = grpc.composite_channel_credentials(credentials, token)
    with grpc.secure_channel(server.address, with_token) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"vidsearch.v1.SearchService", "grpc.health.v1.Health"} <= set(database.get_services())
        search = database.FindFileContainingSymbol("vidsearch.v1.SearchService")
        assert search.package == "vidsearch.v1"
    with grpc.secure_channel(server.address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
def narrow(repository: Repository, media: Media, tmp_path: Path) -> Iterator[SearchServer]:
    settings = settings_for(repository, media, tmp_path / "index", limits={"max_concurrent_rpcs": 1})
    with SearchServer(settings) as server:
        yield server


def test_a_full_server_refuses_at_once_and_recovers(narrow: SearchServer) -> None:
    release = threading.Event()
    outcome: dict[str, object] = {}

    def slow_upload() -> Iterator[pb.EmbedVideoRequest]:
        yield pb.EmbedVideoRequest(path="clip-0.mp4")
        release.wait(10)  # the call holds its slot while the stream stays open

    def hold() -> None:
        stub = pb_grpc.SearchServiceStub(grpc.insecure_channel(narrow.address))
        outcome["clips"] = len(stub.EmbedVideo(slow_upload(), timeout=20).clips)

    holder = threading.Thread(target=hold)
    holder.start()
    with SearchClient(narrow.address) as client:
        deadline = time.monotonic() + 10
        while narrow.metrics.in_flight._value.get() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            client.search("a shape")
        assert time.monotonic() - started < 2  # refused, not queued
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server busy: 1 requests are in progress" in (refused.value.details() or "")
        assert client.health() == "SERVING"  # health checks are never refused
        release.set()
        holder.join(20)
        assert outcome["clips"] == 3
        assert client.search("a shape").hits == ()  # the slot is free again (the index is empty)
    assert narrow.metrics.rejected.labels("Search")._value.get() == 1


@pytest.fixture(scope="module")
def long_video(media: Media) -> Path:
    """A 300-second video: 3,000 clips of 0.1 s, each decoded and embedded, a few seconds of work."""
    spec = SynthSpec(n=2, seed=4, size=64, frames=3000, fps=10)
    path = media.root / "long.mp4"
    if not path.exists():
        write_mp4(path, scene_frames(spec, plan(spec)[0]), spec.fps, spec.crf)
    return path


def test_the_server_stops_working_when_the_deadline_passes(narrow: SearchServer, long_video: Path) -> None:
    with SearchClient(narrow.address) as client:
        started = time.monotonic()
        full = client.embed_video(path=long_video.name, clip_length_s=0.1, timeout_s=120)
        work_s = time.monotonic() - started
        assert len(full.embeddings) == 3000
        assert work_s > 1.0  # the full job is long enough for the deadline to cut it short
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            client.embed_video(path=long_video.name, clip_length_s=0.1, timeout_s=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        while narrow.metrics.in_flight._value.get() > 0 and time.monotonic() - started < work_s:
            time.sleep(0.01)
        freed_s = time.monotonic() - started
        assert freed_s < 0.3 + 0.5 * (work_s - 0.3)  # abandoned, not finished
        assert narrow.metrics.requests.labels("EmbedVideo", "DEADLINE_EXCEEDED")._value.get() == 1
        assert client.health() == "SERVING"
