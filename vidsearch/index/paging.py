"""Result pages, grouping per video, and opaque page tokens; backend-neutral.

Paging is stateless: a page token carries the offset of the next page, bound (HMAC) to the index's
secret and to a fingerprint of the query and its options, so a token cannot be forged, edited, or
replayed with another query. Each page re-runs the search for the results up to its end, which
`MAX_TOP_K` bounds; pages reflect the index as it is when each page is asked for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

import numpy as np

from vidsearch.errors import InvalidPageTokenError, InvalidQueryError
from vidsearch.index.base import (
    Hit,
    SearchFilter,
    SearchOptions,
    SearchPage,
    Tuning,
    VideoGroup,
    normalise_rows,
)

HitsFn = Callable[[np.ndarray, int, SearchFilter, Tuning], list[list[Hit]]]

_TOKEN_VERSION = 1
_PAYLOAD = struct.Struct(">BI16s")
_MAC_BYTES = 16


def fingerprint(query: np.ndarray, options: SearchOptions) -> bytes:
    """16 bytes that change with the query vector or any option that changes the result list."""
    digest = hashlib.sha256(np.ascontiguousarray(query, dtype=np.float32).tobytes())
    described = (
        options.top_k,
        options.effective_page_size,
        options.group_by_video,
        options.filter.canonical(),
        options.tuning.nprobe,
        options.tuning.ef_search,
    )
    digest.update(repr(described).encode())
    return digest.digest()[:16]


def encode_token(key: bytes, query_fingerprint: bytes, offset: int) -> str:
    payload = _PAYLOAD.pack(_TOKEN_VERSION, offset, query_fingerprint)
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode_token(key: bytes, token: str, query_fingerprint: bytes) -> int:
    """The offset a token stands for; InvalidPageTokenError says why a token is refused."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPageTokenError("page token is not valid base64url text") from None
    if len(raw) != _PAYLOAD.size + _MAC_BYTES:
        raise InvalidPageTokenError(f"page token has {len(raw)} bytes, expected {_PAYLOAD.size + _MAC_BYTES}")
    payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise InvalidPageTokenError("page token was altered, or was issued by another index")
    version, offset, bound_to = _PAYLOAD.unpack(payload)
    if version != _TOKEN_VERSION:
        raise InvalidPageTokenError(f"page token version {version} is not supported")
    if not hmac.compare_digest(bound_to, query_fingerprint):
        raise InvalidPageTokenError("page token was issued for another query or other search options")
    return int(offset)


def group_by_video(hits: Sequence[Hit]) -> list[VideoGroup]:
    """Hits (best first) gathered per video; videos ordered by their best hit."""
    grouped: dict[str, list[Hit]] = {}
    for hit in hits:
        grouped.setdefault(hit.clip.video_id, []).append(hit)
    return [VideoGroup(video_id=video, hits=tuple(members)) for video, members in grouped.items()]


def paginate(
    fetch: HitsFn,
    queries: np.ndarray,
    dim: int,
    options: SearchOptions,
    page_tokens: Sequence[str | None] | None,
    key: bytes,
) -> list[SearchPage]:
    """One page per query row, fetching from `fetch` only as many hits as the deepest page needs."""
    normalised = normalise_rows(queries, dim, what="query")
    count = normalised.shape[0]
    tokens = list(page_tokens) if page_tokens is not None else [None] * count
    if len(tokens) != count:
        raise InvalidQueryError(f"got {len(tokens)} page tokens for {count} queries")
    prints = [fingerprint(row, options) for row in normalised]
    offsets = [0 if t is None else decode_token(key, t, fp) for t, fp in zip(tokens, prints, strict=True)]
    size = options.effective_page_size
    # one hit beyond the deepest page tells whether a next page exists; grouping needs them all.
    deepest = max(offsets, default=0) + size + 1
    need = options.top_k if options.group_by_video else min(options.top_k, deepest)
    results = fetch(normalised, need, options.filter, options.tuning) if count else []
    pages = []
    for hits, offset, query_print in zip(results, offsets, prints, strict=True):
        if options.group_by_video:
            groups = group_by_video(hits)
            more = len(groups) > offset + size
            page = SearchPage(groups=tuple(groups[offset : offset + size]))
        else:
            more = len(hits) > offset + size
            page = SearchPage(hits=tuple(hits[offset : offset + size]))
        token = encode_token(key, query_print, offset + size) if more else None
        pages.append(SearchPage(hits=page.hits, groups=page.groups, next_page_token=token))
    return pages
