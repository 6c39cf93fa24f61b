"""Bad input, each case on the same running server: the status code, the message, and afterwards a
healthy server with its data intact (same clip count, same answer to a reference query)."""

import re
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest

from vidsearch.client import SearchClient
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc

from .conftest import Running

REFERENCE = "a red circle moves to the left"
Call = Callable[[SearchClient, pb_grpc.SearchServiceStub, Running], object]


@dataclass(frozen=True)
class Case:
    name: str
    call: Call
    code: grpc.StatusCode
    message: str  # a regular expression the status message must match


def _unknown_filter(stub: pb_grpc.SearchServiceStub) -> object:
    """A filter carrying field 42, as a newer client would send it."""
    tag = bytes([(42 << 3 | 2) & 0x7F | 0x80, (42 << 3 | 2) >> 7])  # field 42, length-delimited, as a varint
    raw = pb.Filter(tags=["news"]).SerializeToString() + tag + b"\x03new"
    request = pb.SearchRequest(query=REFERENCE, filter=pb.Filter.FromString(raw))
    return stub.Search(request, timeout=10)


def _stream(chunks: list[bytes]) -> Call:
    def call(client: SearchClient, stub: pb_grpc.SearchServiceStub, running: Running) -> object:
        return stub.EmbedVideo(iter([pb.EmbedVideoRequest(chunk=c) for c in chunks]), timeout=10)

    return call


INVALID, NOT_FOUND, DENIED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.PERMISSION_DENIED)
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
CASES = [
    Case("empty query", lambda c, s, r: c.search(""), INVALID, "the query is empty"),
    Case("whitespace query", lambda c, s, r: c.search(" \t\n "), INVALID, "the query is empty or whitespace"),
    Case("overlong query", lambda c, s, r: c.search("a" * 1001), INVALID,
         "1001 characters long; the limit is 1000"),
    Case("top_k 0", lambda c, s, r: c.search(REFERENCE, top_k=0), INVALID,
         r"top_k must be in \[1, 10000\], got 0"),
    Case("top_k negative", lambda c, s, r: c.search(REFERENCE, top_k=-3), INVALID, "got -3"),
    Case("top_k too large", lambda c, s, r: c.search(REFERENCE, top_k=10_001), INVALID,
         r"\[1, 10000\], got 10001"),
    Case("page size beyond top_k", lambda c, s, r: c.search(REFERENCE, top_k=2, page_size=5), INVALID,
         "page_size must be in"),
    Case("unknown filter", lambda c, s, r: _unknown_filter(s), INVALID,
         r"unknown filter field\(s\) \[42\].*video_ids, tags and time_range"),
    Case("empty time range", lambda c, s, r: c.search(REFERENCE, time_range=(5.0, 1.0)), INVALID,
         r"time range \[5.0, 1.0\] is empty"),
    Case("malformed page token", lambda c, s, r: c.search(REFERENCE, page_token="not a token!"), INVALID,
         "page token is not valid base64url"),
    Case("foreign page token",
         lambda c, s, r: c.search(REFERENCE, top_k=4, page_size=2,
                                  page_token=c.search("another query", top_k=4, page_size=2).next_page_token),
         INVALID, "issued for another query"),
    Case("non-video bytes", lambda c, s, r: c.search_by_video(video=b"\x00\x01 no video here " * 50), INVALID,
         "<bytes>: not a readable video container"),
    Case("empty bytes", lambda c, s, r: c.search_by_video(video=b""), INVALID, r"empty input \(0 bytes\)"),
    Case("no video at all", lambda c, s, r: s.SearchByVideo(pb.SearchByVideoRequest(), timeout=10), INVALID,
         "give the video as bytes"),
    Case("span outside the video", lambda c, s, r: c.search_by_video(path="clip-0.mp4", start_s=50.0),
         INVALID, "lies outside the video"),
    Case("nonexistent path", lambda c, s, r: c.search_by_video(path="missing.mp4"), NOT_FOUND,
         "'missing.mp4': no such file under the allowed roots"),
    Case("a directory", lambda c, s, r: c.classify(path=".", labels=["x"]), INVALID, "not a regular file"),
    Case("absolute path elsewhere", lambda c, s, r: c.search_by_video(path=str(r.media.outside)), DENIED,
         "outside the server's allowed roots"),
    Case("dot-dot path", lambda c, s, r: c.search_by_video(path="../elsewhere/clip-0.mp4"), DENIED,
         r"'\.\.' is not allowed"),
    Case("symlink escape", lambda c, s, r: c.embed_video(path="escape.mp4"), DENIED, "outside the server's"),
    Case("ingest outside the roots", lambda c, s, r: c.ingest(["clip-0.mp4", str(r.media.outside)]), DENIED,
         "outside the server's allowed roots"),
    Case("no texts", lambda c, s, r: c.embed_text([]), INVALID, "needs at least one text"),
    Case("blank text", lambda c, s, r: c.embed_text(["fine", " "]), INVALID, "text 1 is empty"),
    Case("non-video upload", _stream([b"not a video"] * 3), INVALID, "not a readable video container"),
    Case("empty upload", _stream([]), INVALID, "received no video"),
    Case("upload over the limit", _stream([b"\x00" * (512 << 10)] * 3), EXHAUSTED,
         "the upload exceeds 1048576 bytes"),
    Case("message over the limit", lambda c, s, r: c.search_by_video(video=b"\x00" * (3 << 20)), EXHAUSTED,
         "larger than max"),
    Case("template without a slot",
         lambda c, s, r: c.classify(path="clip-0.mp4", labels=["a"], templates=["x"]),
         INVALID, "must contain exactly one"),
    Case("repeated labels", lambda c, s, r: c.classify(path="clip-0.mp4", labels=["a", "a"]), INVALID,
         "labels must be distinct"),
    Case("unknown video", lambda c, s, r: c.delete_video("no-such-video"), NOT_FOUND,
         "'no-such-video' is not in the index"),
    Case("no items", lambda c, s, r: c.ingest([]), INVALID, "needs at least one item"),
    Case("clip length below the minimum",
         lambda c, s, r: c.embed_video(path="clip-0.mp4", clip_length_s=1e-4),
         INVALID, r"clip length 0.0001 s is below the minimum of 0.1 s \(limits.min_clip_s\)"),
    Case("clip stride below the minimum",
         lambda c, s, r: c.embed_video(path="clip-0.mp4", clip_length_s=1.0, clip_stride_s=1e-3),
         INVALID, r"clip stride 0.001 s is below the minimum"),
    Case("NaN clip length", lambda c, s, r: c.embed_video(path="clip-0.mp4", clip_length_s=float("nan")),
         INVALID, "clip length must be a finite number of seconds, got nan"),
    Case("infinite clip stride",
         lambda c, s, r: c.embed_video(path="clip-0.mp4", clip_length_s=1.0, clip_stride_s=float("inf")),
         INVALID, "clip stride must be a finite number"),
    Case("ingest with tiny clips",
         lambda c, s, r: s.Ingest(pb.IngestRequest(items=[pb.IngestItem(path="clip-0.mp4", video_id="tiny")],
                                                   clips=pb.ClipOptions(length_s=1e-5)), timeout=10),
         INVALID, r"\(limits.min_clip_s\)"),
    Case("10,000-character path", lambda c, s, r: c.search_by_video(path="a" * 10_000), INVALID,
         r"the path is 10000 bytes long; the limit is 4096"),
    Case("path component too long", lambda c, s, r: c.embed_video(path="b" * 300 + "/x.mp4"), INVALID,
         r"a path component is 300 bytes long; the limit is 255"),
    Case("long missing path, message capped", lambda c, s, r: c.search_by_video(path="a/" * 1500 + "x.mp4"),
         NOT_FOUND, r"^'a/a/a/.{900,1100}$"),
    Case("1 MB video id", lambda c, s, r: c.delete_video("v" * (1 << 20)), INVALID,
         r"the video id is 1048576 characters long; the limit is 1024"),
    Case("long template",
         lambda c, s, r: c.classify(path="clip-0.mp4", labels=["a"], templates=["x" * 48_000]),
         INVALID, r"template 0 is 48000 characters long; the limit is 1000"),
]


@pytest.fixture(scope="module")
def baseline(running: Running) -> tuple[int, list[tuple[str, float]]]:
    hits = running.client.search(REFERENCE, top_k=5).hits
    return running.client.index_stats().clips, [(h.clip_id, h.score) for h in hits]


@pytest.fixture(scope="module")
def stub(running: Running) -> pb_grpc.SearchServiceStub:
    return pb_grpc.SearchServiceStub(grpc.insecure_channel(running.server.address))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_the_server_carries_on(case: Case, running: Running,
                                                        stub: pb_grpc.SearchServiceStub,
                                                        baseline: tuple[int, list[tuple[str, float]]],
                                                        ) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        case.call(running.client, stub, running)
    assert refused.value.code() == case.code, refused.value.details()
    assert refused.value.details() is not None
    assert re.search(case.message, refused.value.details()), refused.value.details()
    client = running.client
    assert client.health() == "SERVING"
    clips, hits = baseline
    assert client.index_stats().clips == clips
    assert [(h.clip_id, h.score) for h in client.search(REFERENCE, top_k=5).hits] == hits
