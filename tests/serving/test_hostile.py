"""The hostile-input suite: ~1,000 requests an adversarial client would send, to `vidsearch serve` running
as its own process — garbage bytes to every RPC with and without a token, truncated and mistyped
messages, huge and degenerate values, hostile paths and ids, bad tokens. The contract: no INTERNAL or
UNKNOWN answer, the process alive and health SERVING throughout, no traceback in its log, and its
resident memory grown by at most 50 MB over the suite."""

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb

from ..runtime.models import Repository
from .conftest import VIDEOS, Media

TOKEN = "hostile-suite-token"
SERVICE = "/vidsearch.v1.SearchService/"
UNARY = ("Search", "SearchByVideo", "EmbedText", "Classify", "Ingest", "DeleteVideo", "GetIndexStats")
HEALTH = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
GOOD = (("authorization", f"Bearer {TOKEN}"),)
BAD_TOKENS: tuple[tuple[tuple[str, str], ...], ...] = (
    (), (("authorization", "Bearer wrong"),), (("authorization", "Bearer "),),
    (("authorization", "Basic x"),),
    (("authorization", TOKEN),), (("authorization", "Bearer " + "t" * 4000),),
    (("authorization", f"Bearer {TOKEN}x"),), (("authorization", f"bearer  {TOKEN[:-1]}"),),
)
MEMORY_GROWTH_BYTES = 50 << 20
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Request:
    what: str
    method: str
    payload: bytes | list[bytes]  # a list: a request stream
    metadata: tuple[tuple[str, str], ...] = GOOD


def _garbage(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((1, 2, 7, 64, 513, 4096)))


def _invalid_utf8_string(field: int) -> bytes:
    return bytes([field << 3 | 2, 4]) + b"\xff\xfe\xc3\x28"


def _huge_varint(field: int) -> bytes:
    return bytes([field << 3]) + b"\xff" * 9 + b"\x01"


def _degenerate() -> Iterator[tuple[str, str, Message]]:
    """Well-formed messages with values at and past every edge."""
    long_id, long_path = "v" * (1 << 20), "p" * 10_000
    for top_k in (0, -1, 2**31 - 1, -(2**31)):
        yield "top_k", "Search", pb.SearchRequest(query="a", top_k=top_k)
    for size in (0, -5, 2**31 - 1):
        yield "page_size", "Search", pb.SearchRequest(query="a", top_k=5, page_size=size)
    for probe in (0, -1, 2**31 - 1):
        yield "nprobe", "Search", pb.SearchRequest(query="a", nprobe=probe, ef_search=probe)
    for start, end in ((NAN, NAN), (INF, -INF), (-1.0, 5.0), (1e308, 1e308), (5.0, 1.0)):
        yield "time range", "Search", pb.SearchRequest(query="a", filter=pb.Filter(
            time_range=pb.TimeRange(start_s=start, end_s=end)))
        yield "span", "SearchByVideo", pb.SearchByVideoRequest(path=VIDEOS[0], start_s=start, end_s=end)
        yield "classify span", "Classify", pb.ClassifyRequest(path=VIDEOS[0], start_s=start, end_s=end,
                                                              labels=["a"])
    for query in ("\x00", "\u202e\u200b", "a" * 1001, "\ud7ff" * 900, " " * 900, "<|endoftext|>" * 70,
                  "".join(chr(0x41 + i % 26) for i in range(1000))):
        yield "query", "Search", pb.SearchRequest(query=query)
    for token in ("x", "!" * 5000, "A" * 100_000, "eyJ9"):
        yield "page token", "Search", pb.SearchRequest(query="a", page_token=token)
    yield "many filter ids", "Search", pb.SearchRequest(query="a", filter=pb.Filter(
        video_ids=[f"v{i}" for i in range(10_000)]))
    yield "long filter id", "Search", pb.SearchRequest(query="a", filter=pb.Filter(video_ids=[long_id]))
    yield "empty tag", "Search", pb.SearchRequest(query="a", filter=pb.Filter(tags=[""]))
    for path in (long_path, "\x00", "/", "/etc/passwd", "../../etc/passwd", "a/" * 2000, "💥" * 100,
                 "clip-0.mp4/..", ".", "//", "~root", "\n"):
        yield "path", "SearchByVideo", pb.SearchByVideoRequest(path=path)
        yield "classify path", "Classify", pb.ClassifyRequest(path=path)
        yield "ingest path", "Ingest", pb.IngestRequest(items=[pb.IngestItem(path=path)])
    yield from _degenerate_index_requests(long_id)


def _degenerate_index_requests(long_id: str) -> Iterator[tuple[str, str, Message]]:
    for length, stride in ((NAN, 0.0), (INF, 0.0), (-1.0, 0.0), (1e-9, 0.0), (1.0, NAN), (1.0, -1.0),
                           (1.0, 1e-9), (1e308, 1e308), (0.05, 0.0)):
        item = pb.IngestItem(path=VIDEOS[0], video_id="x")
        yield "ingest clips", "Ingest", pb.IngestRequest(items=[item], clips=pb.ClipOptions(length_s=length,
                                                                                            stride_s=stride))
    yield "ingest many items", "Ingest", pb.IngestRequest(items=[pb.IngestItem(path="x")] * 300)
    yield "ingest long id", "Ingest", pb.IngestRequest(items=[pb.IngestItem(path=VIDEOS[0],
                                                                            video_id=long_id)])
    yield "ingest long tag", "Ingest", pb.IngestRequest(items=[pb.IngestItem(path=VIDEOS[0],
                                                                             tags=["t" * 5000])])
    for video_id in (long_id, "", "\x00", "missing"):
        yield "delete", "DeleteVideo", pb.DeleteVideoRequest(video_id=video_id)
    for texts in ([], [""], ["a"] * 300, ["b" * 1001], ["\x00"]):
        yield "texts", "EmbedText", pb.EmbedTextRequest(texts=texts)
    for labels, templates, top_k in (([], [], 0), (["a"] * 2, [], 5), (["a"], ["none"], 5),
                                     (["a"], ["{}"], -1), ([f"l{i}" for i in range(300)], [], 5),
                                     (["a"], ["{}" * 600], 5)):
        yield "classify", "Classify", pb.ClassifyRequest(path=VIDEOS[0], labels=labels, templates=templates,
                                                         top_k=top_k)
    for video in (b"", b"\x00" * 100, b"RIFF" + b"\xff" * 200, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500):
        yield "video bytes", "SearchByVideo", pb.SearchByVideoRequest(video=video)
        yield "classify bytes", "Classify", pb.ClassifyRequest(video=video)


def _stream(chunks: list[pb.EmbedVideoRequest]) -> list[bytes]:
    return [c.SerializeToString() for c in chunks]


def _requests(media: Media) -> list[Request]:
    rng = random.Random(18)
    requests: list[Request] = []
    video = media.videos[0].read_bytes()
    for round_ in range(40):
        for name in UNARY:
            metadata = GOOD if round_ % 2 == 0 else rng.choice(BAD_TOKENS)
            requests.append(Request("garbage", SERVICE + name, _garbage(rng), metadata))
        chunks = [_garbage(rng) for _ in range(rng.randint(0, 3))]
        signed = rng.choice((GOOD, *BAD_TOKENS))
        requests.append(Request("garbage stream", SERVICE + "EmbedVideo", chunks, signed))
        requests.append(Request("garbage health", HEALTH, _garbage(rng), ()))
        requests.append(Request("garbage reflection", REFLECTION, [_garbage(rng)], rng.choice((GOOD, ()))))
    for field in range(1, 12):
        for name in UNARY:
            requests.append(Request("invalid utf-8", SERVICE + name, _invalid_utf8_string(field)))
            requests.append(Request("huge varint", SERVICE + name, _huge_varint(field)))
            requests.append(Request("wrong wire type", SERVICE + name, bytes([field << 3 | 5]) + b"\x00" * 4))
    for what, name, message in _degenerate():
        data = message.SerializeToString()
        requests.append(Request(what, SERVICE + name, data))
        requests.append(Request(what + " truncated", SERVICE + name, data[: max(1, len(data) // 2)]))
        requests.append(Request(what + " without a token", SERVICE + name, data, ()))
    uploads = [
        [pb.EmbedVideoRequest(chunk=video[:1000]), pb.EmbedVideoRequest(path=VIDEOS[0])],
        [pb.EmbedVideoRequest(path=VIDEOS[0], clips=pb.ClipOptions(length_s=NAN))],
        [pb.EmbedVideoRequest(path=VIDEOS[0], clips=pb.ClipOptions(length_s=1e-6))],
        [pb.EmbedVideoRequest(path="p" * 10_000)],
        [pb.EmbedVideoRequest(chunk=b"")] * 50,
        [pb.EmbedVideoRequest(chunk=video[i : i + 997]) for i in range(0, len(video) // 2, 997)],
        [pb.EmbedVideoRequest(chunk=b"\x00" * (256 << 10))] * 12,  # over max_upload_bytes
        [pb.EmbedVideoRequest(chunk=video, clips=pb.ClipOptions(length_s=0.1))],  # over max_clips_per_request
    ]
    for upload in uploads:
        for metadata in (GOOD, ()):
            requests.append(Request("upload", SERVICE + "EmbedVideo", _stream(upload), metadata))
    query = pb.SearchRequest(query="a").SerializeToString()
    for metadata in BAD_TOKENS:
        for name in UNARY:
            requests.append(Request("bad token", SERVICE + name, query, metadata))
    return requests


def _call(channel: grpc.Channel, request: Request) -> grpc.StatusCode:
    raw: Callable[[bytes], bytes] = lambda data: data  # noqa: E731  (bytes on the wire as they are)
    try:
        if request.method == REFLECTION:
            assert isinstance(request.payload, list)
            streams = channel.stream_stream(request.method, request_serializer=raw, response_deserializer=raw)
            responses = streams(iter(request.payload), timeout=10, metadata=request.metadata)
            for _ in responses:
                pass
        elif isinstance(request.payload, list):
            channel.stream_unary(request.method, request_serializer=raw, response_deserializer=raw)(
                iter(request.payload), timeout=30, metadata=request.metadata)
        else:
            channel.unary_unary(request.method, request_serializer=raw, response_deserializer=raw)(
                request.payload, timeout=30, metadata=request.metadata)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _log_entries(log: Path) -> list[dict[str, Any]]:
    """The server's JSON log lines; anything else it wrote (a traceback gRPC printed) as a "raw" entry."""
    entries = []
    for line in log.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"message": "", "level": "RAW", "raw": line})
    return entries


def _start(command: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stderr=sink, cwd=log.parent)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        for entry in _log_entries(log):
            if entry["message"].startswith("vidsearch serving"):
                return process, str(entry["message"].split(" on ")[1].split(" ")[0])
        time.sleep(0.1)
    process.kill()
    process.wait()
    pytest.fail(f"the server did not start: {log.read_text()}")


@pytest.mark.slow
def test_hostile_requests_get_typed_answers_and_the_server_stays_healthy(repository: Repository, media: Media,
                                                                         tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        f'port = 0\nmetrics_port = 0\nindex = "{tmp_path / "index"}"\nallowed_roots = ["{media.root}"]\n'
        'log_level = "INFO"\n'
        f'[runtime]\nmodel_repository = "{repository.path}"\nthreads = 1\n[video]\nclip_length_s = 2.0\n'
        f'[auth]\ntokens = ["{TOKEN}"]\n'
        '[http]\nport = 0\n'
        '[limits]\nmax_message_bytes = 4194304\nmax_upload_bytes = 2097152\nmax_clips_per_request = 40\n')
    log = tmp_path / "server.log"
    process, address = _start([sys.executable, "-c", "from vidsearch.cli import app; app()", "serve",
                               "--config", str(config)], {**os.environ}, log)
    codes: Counter[str] = Counter()
    bad: list[str] = []
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            requests = _requests(media)
            assert len(requests) >= 1000
            warm_up = 100
            for number, request in enumerate(requests):
                if number == warm_up:
                    rss_start = _rss_bytes(process.pid)
                code = _call(channel, request)
                codes[code.name] += 1
                if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE):
                    bad.append(f"{request.what} → {request.method}: {code.name}")
                if number % 50 == 0:
                    assert process.poll() is None, log.read_text()[-3000:]
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    assert status == health_pb2.HealthCheckResponse.SERVING
            growth = _rss_bytes(process.pid) - rss_start
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert bad == [], f"{len(bad)} of {len(requests)}: {bad[:20]}"
    assert codes["INVALID_ARGUMENT"] > 300, codes
    assert codes["UNAUTHENTICATED"] > 200, codes
    assert growth <= MEMORY_GROWTH_BYTES, f"{growth >> 20} MiB"
    entries = _log_entries(log)
    assert not [e for e in entries if "exception" in e or e["level"] in ("ERROR", "RAW")]
    failed_logins = [e for e in entries if "failed authentication" in e["message"]]
    assert 1 <= len(failed_logins) <= 3  # rate-limited: one line per 10 s
