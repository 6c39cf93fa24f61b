"""Ingest: files under allowed roots → clips → embeddings → the index, one result per file.

The request is checked as a whole first (item count, every path allowed): a request naming a file
outside the roots does nothing at all. Then each file is decoded, embedded and added on its own: a
missing or undecodable file is reported in its result while the others go in. Clip ids are
`<video id>#<clip number>`; with `replace` a video already indexed is deleted first (not atomic with
the add), without it such a video is an ALREADY_EXISTS result.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from vidsearch.errors import (
    DeadlineExceededError,
    DuplicateClipError,
    LimitExceededError,
    NotFoundError,
    RequestError,
    VidsearchError,
)
from vidsearch.index import ClipIndex, ClipRecord
from vidsearch.index.base import clip_id
from vidsearch.serving import convert
from vidsearch.serving.deadline import RequestDeadline
from vidsearch.serving.media import VideoModels
from vidsearch.serving.paths import AllowedPath, AllowedRoots
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.settings import LimitSettings
from vidsearch.serving.status import capped, status_of
from vidsearch.video import ClipSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Item:
    message: pb.IngestItem
    allowed: AllowedPath | None
    problem: VidsearchError | None  # the path is allowed but missing or not a file


class Ingester:
    def __init__(self, index: ClipIndex, videos: VideoModels, roots: AllowedRoots, model_version: str,
                 limits: LimitSettings) -> None:
        self._index = index
        self._videos = videos
        self._roots = roots
        self._model_version = model_version
        self._max_items = limits.max_ingest_items
        self._max_name_chars = limits.max_name_chars

    def _check(self, items: Sequence[pb.IngestItem]) -> list[_Item]:
        if not items:
            raise RequestError("Ingest needs at least one item")
        if len(items) > self._max_items:
            raise LimitExceededError(f"{len(items)} items in one Ingest; the limit is {self._max_items}")
        checked = []
        for item in items:
            convert.name(item.video_id, "video id", self._max_name_chars)
            for tag in item.tags:
                convert.name(tag, "tag", self._max_name_chars)
            try:
                checked.append(_Item(item, self._roots.check(item.path), None))
            except (NotFoundError, RequestError) as err:  # outside the roots raises: nothing is done
                checked.append(_Item(item, None, err))
        return checked

    def ingest(self, request: pb.IngestRequest, spec: ClipSpec,
               deadline: RequestDeadline) -> pb.IngestResponse:
        results = []
        for item in self._check(request.items):
            try:
                results.append(self._one(item, spec, request.replace, deadline))
            except DeadlineExceededError:
                raise
            except VidsearchError as err:
                video_id = item.message.video_id or (item.allowed.relative if item.allowed else "")
                log.warning("ingest %s: %s", item.message.path, err)
                results.append(pb.IngestResult(path=item.message.path, video_id=video_id,
                                               error_code=status_of(err).name, error=capped(str(err))))
        added = sum(r.clips for r in results)
        return pb.IngestResponse(results=results, clips_added=added, index_version=self._index.version)

    def _one(self, item: _Item, spec: ClipSpec, replace: bool, deadline: RequestDeadline) -> pb.IngestResult:
        if item.problem is not None:
            raise item.problem
        assert item.allowed is not None
        video_id = item.message.video_id or item.allowed.relative
        index = self._index
        if not replace and index.get([clip_id(video_id, 0)]):
            raise DuplicateClipError(f"video {video_id!r} is in the index already (set replace to re-ingest)")
        clips, probed = self._videos.segment(item.allowed.path, spec, deadline)
        outputs = self._videos.embed(item.allowed.path, clips, probed, deadline)
        records = [
            ClipRecord(clip_id(video_id, clip.index), video_id, item.allowed.path.as_uri(), clip.start_s,
                       clip.end_s, index.model, self._model_version, frozenset(item.message.tags))
            for clip in outputs.clips
        ]
        if replace:
            index.delete_videos([video_id])
        index.add(records, outputs.values)
        return pb.IngestResult(path=item.message.path, video_id=video_id, clips=len(records))
