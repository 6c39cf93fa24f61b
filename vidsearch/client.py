"""`SearchClient`: the Python client of `vidsearch.v1.SearchService`.

    with SearchClient("127.0.0.1:50051") as client:
        for hit in client.search("a red circle moving left", top_k=5).hits:
            print(hit.video_id, hit.start_s, hit.end_s, hit.score)

Light on purpose: gRPC, the generated stubs and numpy, no models. Failures raise `grpc.RpcError`
(`.code()`, `.details()`); every call has a deadline (`timeout_s`, 30 s unless given).
"""

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numpy.typing import NDArray

from vidsearch.serving.address import host_of, is_loopback
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 30.0
UPLOAD_CHUNK_BYTES = 1 << 20
_MAX_MESSAGE_BYTES = 32 << 20


@dataclass(frozen=True)
class SearchHit:
    clip_id: str
    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    tags: tuple[str, ...] = ()
    clip_ids: tuple[str, ...] = ()  # merge_moments: the clips the moment was merged from


@dataclass(frozen=True)
class VideoHits:
    video_id: str
    hits: tuple[SearchHit, ...]


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    groups: tuple[VideoHits, ...]  # filled instead of hits with group_by_video
    next_page_token: str  # empty on the last page
    model: str
    index_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoEmbeddings:
    starts_s: tuple[float, ...]
    ends_s: tuple[float, ...]
    embeddings: NDArray[np.float32]  # [clips, dim], L2-normalised
    duration_s: float


@dataclass(frozen=True)
class IngestOutcome:
    path: str
    video_id: str
    clips: int
    error_code: str = ""  # a gRPC status name when this file failed
    error: str = ""


def _hit(message: pb.Hit) -> SearchHit:
    return SearchHit(message.clip_id, message.video_id, message.uri, message.start_s, message.end_s,
                     message.score, tuple(message.tags), tuple(message.clip_ids))


def _result(response: pb.SearchResponse) -> SearchResult:
    timings = {"embed": response.timings.embed_ms, "search": response.timings.search_ms,
               "total": response.timings.total_ms}
    return SearchResult(
        hits=tuple(_hit(h) for h in response.hits),
        groups=tuple(VideoHits(g.video_id, tuple(_hit(h) for h in g.hits)) for g in response.groups),
        next_page_token=response.next_page_token,
        model=response.model,
        index_version=response.index_version,
        timings_ms=timings,
    )


def _filter(video_ids: Sequence[str], tags: Sequence[str],
            time_range: tuple[float, float] | None) -> pb.Filter:
    message = pb.Filter(video_ids=list(video_ids), tags=list(tags))
    if time_range is not None:
        message.time_range.CopyFrom(pb.TimeRange(start_s=time_range[0], end_s=time_range[1]))
    return message


class SearchClient:
    """A connection to one server. `token`: bearer token; `tls`: verify the server's certificate against
    `root_certificate` (PEM; default: the system's roots)."""

    def __init__(self, target: str, *, token: str | None = None, tls: bool = False,
                 root_certificate: bytes | Path | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_message_bytes: int = _MAX_MESSAGE_BYTES) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls or root_certificate is not None:
            root = root_certificate.read_bytes() if isinstance(root_certificate, Path) else root_certificate
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root), options)
        else:
            if token and not is_loopback(host_of(target)):
                warnings.warn(f"sending a bearer token in plaintext to {target}: anyone on the path can read "
                              "it (connect with tls=True)", stacklevel=2)
            self._channel = grpc.insecure_channel(target, options)
        self._stub = pb_grpc.SearchServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout_s = timeout_s

    def _call(self, timeout_s: float | None) -> dict[str, object]:
        return {"timeout": timeout_s or self._timeout_s, "metadata": self._metadata}

    # -- search ------------------------------------------------------------------------------------

    def search(self, query: str, *, top_k: int | None = None, video_ids: Sequence[str] = (),
               tags: Sequence[str] = (), time_range: tuple[float, float] | None = None,
               group_by_video: bool = False, merge_moments: bool = False, page_token: str = "",
               page_size: int | None = None, timeout_s: float | None = None) -> SearchResult:
        """The clips that best match `query` (with `merge_moments`, touching clips of a video as one
        moment); pass `next_page_token` back for the next page."""
        request = pb.SearchRequest(query=query, top_k=top_k, filter=_filter(video_ids, tags, time_range),
                                   group_by_video=group_by_video, merge_moments=merge_moments,
                                   page_token=page_token, page_size=page_size)
        return _result(self._stub.Search(request, **self._call(timeout_s)))

    def search_by_video(self, *, video: bytes | None = None, path: str | None = None, start_s: float = 0.0,
                        end_s: float = 0.0, top_k: int | None = None, video_ids: Sequence[str] = (),
                        tags: Sequence[str] = (), group_by_video: bool = False, merge_moments: bool = False,
                        page_token: str = "", timeout_s: float | None = None) -> SearchResult:
        """The clips most like a clip given as bytes or as a path on the server (under its allowed roots)."""
        request = pb.SearchByVideoRequest(video=video, path=path, start_s=start_s, end_s=end_s, top_k=top_k,
                                          filter=_filter(video_ids, tags, None),
                                          group_by_video=group_by_video, merge_moments=merge_moments,
                                          page_token=page_token)
        return _result(self._stub.SearchByVideo(request, **self._call(timeout_s)))

    # -- embeddings and labels ---------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str], *, timeout_s: float | None = None) -> NDArray[np.float32]:
        response = self._stub.EmbedText(pb.EmbedTextRequest(texts=list(texts)), **self._call(timeout_s))
        return np.array([e.values for e in response.embeddings], dtype=np.float32).reshape(-1, response.dim)

    def embed_video(self, *, video: bytes | None = None, path: str | None = None, clip_length_s: float = 0.0,
                    clip_stride_s: float = 0.0, chunk_bytes: int = UPLOAD_CHUNK_BYTES,
                    timeout_s: float | None = None) -> VideoEmbeddings:
        """One embedding per clip of a video, uploaded in chunks (or read by the server from `path`)."""
        clips = pb.ClipOptions(length_s=clip_length_s, stride_s=clip_stride_s)

        def messages() -> Iterator[pb.EmbedVideoRequest]:
            if path is not None:
                yield pb.EmbedVideoRequest(path=path, clips=clips)
                return
            data = video or b""
            for start in range(0, max(len(data), 1), chunk_bytes):
                yield pb.EmbedVideoRequest(chunk=data[start : start + chunk_bytes],
                                           clips=clips if start == 0 else None)

        response = self._stub.EmbedVideo(messages(), **self._call(timeout_s))
        vectors = np.array([c.embedding.values for c in response.clips], dtype=np.float32)
        starts = tuple(c.start_s for c in response.clips)
        ends = tuple(c.end_s for c in response.clips)
        return VideoEmbeddings(starts, ends, vectors.reshape(-1, response.dim), response.duration_s)

    def classify(self, *, video: bytes | None = None, path: str | None = None, labels: Sequence[str] = (),
                 templates: Sequence[str] = (), top_k: int | None = None, start_s: float = 0.0,
                 end_s: float = 0.0, timeout_s: float | None = None) -> list[tuple[str, float]]:
        """(label, probability), best first: zero-shot over `labels`, or the server's classifier."""
        request = pb.ClassifyRequest(video=video, path=path, labels=list(labels), templates=list(templates),
                                     top_k=top_k, start_s=start_s, end_s=end_s)
        response = self._stub.Classify(request, **self._call(timeout_s))
        return [(entry.label, entry.score) for entry in response.labels]

    # -- the index ---------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[str], *, tags: Sequence[str] = (), replace: bool = False,
               clip_length_s: float = 0.0, timeout_s: float | None = None) -> list[IngestOutcome]:
        """Add videos the server reads from its allowed roots; one outcome per path."""
        items = [pb.IngestItem(path=p, tags=list(tags)) for p in paths]
        request = pb.IngestRequest(items=items, replace=replace, clips=pb.ClipOptions(length_s=clip_length_s))
        response = self._stub.Ingest(request, **self._call(timeout_s))
        return [IngestOutcome(r.path, r.video_id, r.clips, r.error_code, r.error) for r in response.results]

    def delete_video(self, video_id: str, *, timeout_s: float | None = None) -> int:
        request = pb.DeleteVideoRequest(video_id=video_id)
        return int(self._stub.DeleteVideo(request, **self._call(timeout_s)).clips_deleted)

    def index_stats(self, *, timeout_s: float | None = None) -> pb.IndexStats:
        return self._stub.GetIndexStats(pb.GetIndexStatsRequest(), **self._call(timeout_s))

    def health(self, service: str = "", *, timeout_s: float | None = None) -> str:
        """The health status name (SERVING, NOT_SERVING, …) of the server or one of its services."""
        request = health_pb2.HealthCheckRequest(service=service)
        response = self._health.Check(request, timeout=timeout_s or self._timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
