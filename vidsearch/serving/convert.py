"""Between the wire and the library: proto requests → index options, index results → proto responses.

A filter field this server does not know (sent by a newer client) is refused, not ignored: ignoring
it would silently return clips the caller meant to exclude.
"""

from collections.abc import Sequence

import numpy as np
from google.protobuf import unknown_fields  # type: ignore[attr-defined]  # no stub in types-protobuf
from numpy.typing import NDArray

from vidsearch.errors import RequestError
from vidsearch.index import Hit, SearchFilter, SearchOptions, SearchPage, TimeRange, Tuning
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb

DEFAULT_TOP_K = 10

SearchLike = pb.SearchRequest | pb.SearchByVideoRequest


def _check_known(message: pb.Filter) -> None:
    numbers = sorted({field.field_number for field in unknown_fields.UnknownFieldSet(message)})
    if message.HasField("time_range"):
        numbers += sorted({f.field_number for f in unknown_fields.UnknownFieldSet(message.time_range)})
    if numbers:
        raise RequestError(f"unknown filter field(s) {numbers}: this server filters by video_ids, tags and "
                           "time_range only")


def name(value: str, what: str, max_chars: int) -> str:
    """A video id or tag of a request, at most `max_chars` long (RequestError otherwise)."""
    if len(value) > max_chars:
        raise RequestError(f"the {what} is {len(value)} characters long; the limit is {max_chars} "
                           "(limits.max_name_chars)")
    return value


def search_filter(message: pb.Filter, max_name_chars: int) -> SearchFilter:
    _check_known(message)
    for video_id in message.video_ids:
        name(video_id, "filter's video id", max_name_chars)
    for tag in message.tags:
        name(tag, "filter's tag", max_name_chars)
    videos = frozenset(message.video_ids) or None
    tags = frozenset(message.tags) or None
    span = None
    if message.HasField("time_range"):
        span = TimeRange(message.time_range.start_s, message.time_range.end_s)
    if any(not v for v in message.video_ids) or any(not t for t in message.tags):
        raise RequestError("filter: video ids and tags must be non-empty strings")
    return SearchFilter(video_ids=videos, tags=tags, time_range=span)


def search_options(request: SearchLike, max_name_chars: int) -> SearchOptions:
    """The index options a Search or SearchByVideo request asks for (InvalidQueryError if out of range)."""
    return SearchOptions(
        top_k=request.top_k if request.HasField("top_k") else DEFAULT_TOP_K,
        page_size=request.page_size if request.HasField("page_size") else None,
        group_by_video=request.group_by_video,
        filter=search_filter(request.filter, max_name_chars),
        tuning=Tuning(
            nprobe=request.nprobe if request.HasField("nprobe") else None,
            ef_search=request.ef_search if request.HasField("ef_search") else None,
        ),
    )


def hit_message(hit: Hit) -> pb.Hit:
    clip = hit.clip
    return pb.Hit(clip_id=clip.clip_id, video_id=clip.video_id, uri=clip.uri, start_s=clip.start_s,
                  end_s=clip.end_s, score=hit.score, tags=sorted(clip.tags))


def page_response(page: SearchPage) -> pb.SearchResponse:
    """Hits or groups and the next page token; the caller adds model, version and timings."""
    return pb.SearchResponse(
        hits=[hit_message(h) for h in page.hits],
        groups=[pb.VideoGroup(video_id=group.video_id, hits=[hit_message(h) for h in group.hits])
                for group in page.groups],
        next_page_token=page.next_page_token or "",
    )


def embeddings(vectors: NDArray[np.float32]) -> list[pb.Embedding]:
    return [pb.Embedding(values=row.tolist()) for row in vectors]


def texts(values: Sequence[str], *, max_chars: int, what: str) -> list[str]:
    """Texts to embed: each non-blank and at most `max_chars` long (RequestError otherwise)."""
    for number, text in enumerate(values):
        if not text.strip():
            raise RequestError(f"{what} {number} is empty or whitespace only")
        if len(text) > max_chars:
            raise RequestError(f"{what} {number} is {len(text)} characters long; the limit is {max_chars}")
    return list(values)


def query_text(query: str, max_chars: int) -> str:
    """A search query: not blank and at most `max_chars` long (RequestError otherwise)."""
    if not query.strip():
        raise RequestError("the query is empty or whitespace only")
    if len(query) > max_chars:
        raise RequestError(f"the query is {len(query)} characters long; the limit is {max_chars}")
    return query
