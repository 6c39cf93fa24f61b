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

from vidsearch.errors import InvalidPageTokenError, InvalidQueryError, VidsearchError
from vidsearch.index.base import (
    Hit,
    PageRequest,
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
    """One page per query row, all with the same options; the first bad page token raises."""
    count = np.asarray(queries).shape[0] if np.ndim(queries) == 2 else 0
    tokens = list(page_tokens) if page_tokens is not None else [None] * count
    if len(tokens) != count:
        raise InvalidQueryError(f"got {len(tokens)} page tokens for {count} queries")
    pages = []
    for page in paginate_batch(fetch, queries, dim, [PageRequest(options, t) for t in tokens], key):
        if isinstance(page, VidsearchError):
            raise page
        pages.append(page)
    return pages


def paginate_batch(
    fetch: HitsFn,
    queries: np.ndarray,
    dim: int,
    requests: Sequence[PageRequest],
    key: bytes,
) -> list[SearchPage | VidsearchError]:
    """One page per query row, each with its own options (`ClipIndex.search_batch`).

    The queries are normalised once, here. Rows sharing a filter and tuning go to `fetch` together, for
    as many hits as the deepest of them needs; each keeps the first hits it needs (a list best first,
    so the head of a deeper list is the shallower one). A bad page token fails its own query only.
    """
    normalised = normalise_rows(queries, dim, what="query")
    if len(requests) != normalised.shape[0]:
        raise InvalidQueryError(f"got {len(requests)} requests for {normalised.shape[0]} queries")
    results: list[SearchPage | VidsearchError] = []
    needs: list[int] = []
    offsets: list[int] = []
    groups: dict[tuple[SearchFilter, Tuning], list[int]] = {}
    for row, request in enumerate(requests):
        options = request.options
        offset = 0
        if request.page_token is not None:
            try:
                offset = decode_token(key, request.page_token, fingerprint(normalised[row], options))
            except InvalidPageTokenError as err:
                results.append(err)
                needs.append(0)
                offsets.append(0)
                continue
        results.append(SearchPage())
        # one hit beyond the deepest page tells whether a next page exists; grouping needs them all.
        deepest = offset + options.effective_page_size + 1
        needs.append(options.top_k if options.group_by_video else min(options.top_k, deepest))
        offsets.append(offset)
        groups.setdefault((options.filter, options.tuning), []).append(row)
    for (search_filter, tuning), rows in groups.items():
        found = fetch(normalised[rows], max(needs[row] for row in rows), search_filter, tuning)
        for row, hits in zip(rows, found, strict=True):
            options = requests[row].options
            results[row] = _page(hits[: needs[row]], offsets[row], options, key, normalised[row])
    return results


def _page(
    hits: Sequence[Hit], offset: int, options: SearchOptions, key: bytes, query: np.ndarray
) -> SearchPage:
    """The page at `offset` of one query's hits, with a token for the next one if there is more."""
    size = options.effective_page_size
    if options.group_by_video:
        groups = group_by_video(hits)
        more = len(groups) > offset + size
        page = SearchPage(groups=tuple(groups[offset : offset + size]))
    else:
        more = len(hits) > offset + size
        page = SearchPage(hits=tuple(hits[offset : offset + size]))
    if not more:
        return page
    token = encode_token(key, fingerprint(query, options), offset + size)
    return SearchPage(hits=page.hits, groups=page.groups, next_page_token=token)
