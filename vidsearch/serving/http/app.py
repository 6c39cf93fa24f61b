"""The routes of the HTTP API and the page: JSON in, the servicer's gRPC method called, JSON out.

Blocking work (searches, decoding, thumbnails) runs on Starlette's thread pool, never on the event
loop. Auth is the gRPC rule: with tokens configured every `/v1/` route needs `Authorization: Bearer
<token>`, except media links signed by this server (`signing.py`). The page and its assets are public:
it asks for the token itself.
"""

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import unquote, urlparse

import grpc
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vidsearch.errors import NotFoundError, RequestError
from vidsearch.index import ClipIndex, ClipRecord
from vidsearch.index.base import clip_id as first_clip_id
from vidsearch.serving.http import errors
from vidsearch.serving.http.body_limit import BodyLimit
from vidsearch.serving.http.media import file_response
from vidsearch.serving.http.models import (
    Deleted,
    ErrorAnswer,
    Hit,
    IngestBody,
    Ingested,
    IngestResult,
    SearchAnswer,
    SearchBody,
    SearchOptionsBody,
    SimilarBody,
    Stats,
    VideoHits,
)
from vidsearch.serving.http.signing import LinkSigner, segment
from vidsearch.serving.http.thumbnails import ThumbnailStore
from vidsearch.serving.paths import AllowedRoots
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.servicer import SearchServicer
from vidsearch.serving.settings import ServerSettings

STATIC = files("vidsearch.serving.http") / "static"
_BEARER = "bearer "
_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorAnswer} for status in (400, 401, 403, 404, 409, 413, 416, 503, 504)
}


class _Context:
    """What the servicer asks of a gRPC context: no client deadline (the server's default applies)."""

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True


_CONTEXT = cast(grpc.ServicerContext, _Context())
_Body = TypeVar("_Body", bound=SearchOptionsBody)


@dataclass(frozen=True)
class HttpParts:
    """What the routes call: the servicer (as gRPC does), and the index and roots for media."""

    servicer: SearchServicer
    index: ClipIndex
    settings: ServerSettings
    thumbnails: ThumbnailStore


class _Auth:
    def __init__(self, tokens: Sequence[str], signer: LinkSigner) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        self.signer = signer

    def header_ok(self, value: str | None) -> bool:
        if not self._tokens:
            return True
        if not value or value[: len(_BEARER)].lower() != _BEARER:
            return False
        offered = value[len(_BEARER) :].strip().encode()
        return any([hmac.compare_digest(offered, token) for token in self._tokens])  # no short cut: no timing

    def require(self, request: Request) -> None:
        if not self.header_ok(request.headers.get("authorization")):
            raise _unauthenticated()

    def require_or_signed(self, request: Request) -> None:
        if self.header_ok(request.headers.get("authorization")):
            return
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if not self.signer.valid(path, request.query_params.get("exp"), request.query_params.get("sig")):
            raise _unauthenticated()


def _unauthenticated() -> HTTPException:
    return HTTPException(401, "missing or invalid bearer token (header 'Authorization: Bearer <token>')")


def _options(body: SearchOptionsBody) -> dict[str, object]:
    """The fields a Search and a SearchByVideo request share."""
    return {"top_k": body.top_k, "page_size": body.page_size, "group_by_video": body.group_by_video,
            "merge_moments": body.merge_moments, "page_token": body.page_token,
            "filter": pb.Filter(video_ids=body.video_ids, tags=body.tags)}


class _Api:
    """What the routes share: the servicer, auth, the roots, and the JSON of a search answer."""

    def __init__(self, parts: HttpParts) -> None:
        settings = parts.settings
        tokens = settings.auth.all_tokens()
        self.parts = parts
        self.servicer = parts.servicer
        self.auth = _Auth(tokens, LinkSigner(bool(tokens)))
        self.roots = AllowedRoots(settings.allowed_roots)

    def hit(self, message: pb.Hit) -> Hit:
        link = self.auth.signer.link
        return Hit(clip_id=message.clip_id, video_id=message.video_id, uri=message.uri,
                   start_s=message.start_s, end_s=message.end_s, score=message.score, tags=list(message.tags),
                   clip_ids=list(message.clip_ids) or [message.clip_id],
                   thumbnail_url=link(f"/v1/clips/{segment(message.clip_id)}/thumbnail"),
                   media_url=link(f"/v1/videos/{segment(message.video_id)}/media"))

    def answer(self, response: pb.SearchResponse) -> Response:
        timings = response.timings
        body = SearchAnswer(
            hits=[self.hit(h) for h in response.hits],
            videos=[VideoHits(video_id=g.video_id, hits=[self.hit(h) for h in g.hits])
                    for g in response.groups],
            next_page_token=response.next_page_token, model=response.model,
            index_version=response.index_version,
            timings_ms={"embed": timings.embed_ms, "search": timings.search_ms, "total": timings.total_ms})
        return Response(body.model_dump_json(), media_type="application/json")

    def record(self, clip: str, what: str) -> ClipRecord:
        record = self.parts.index.get([clip]).get(clip)
        if record is None:
            raise NotFoundError(f"{what} is not in the index")
        return record

    def allowed_file(self, record: ClipRecord) -> Path:
        """The record's video file, only if it lies under the allowed roots."""
        parsed = urlparse(record.uri)
        return self.roots.check(unquote(parsed.path) if parsed.scheme == "file" else record.uri).path


_UPLOAD_OR_CLIP = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": SimilarBody.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "options": {"type": "string", "description": "SearchOptionsBody as JSON"}}}}}}}


def _search_routes(app: FastAPI, api: _Api, guard: list[Any]) -> None:
    servicer = api.servicer

    @app.post("/v1/search", response_model=SearchAnswer, responses=_ERRORS, dependencies=guard)
    def search(body: SearchBody) -> Response:
        """Clips that match a text query, best first."""
        request = pb.SearchRequest(query=body.query, **_options(body))  # type: ignore[arg-type]
        return api.answer(servicer.Search(request, _CONTEXT))

    @app.post("/v1/search-by-video", response_model=SearchAnswer, responses=_ERRORS, dependencies=guard,
              openapi_extra=_UPLOAD_OR_CLIP)
    async def search_by_video(request: Request) -> Response:
        """Clips like an uploaded video (multipart `file`), or like an indexed clip (`{"clip_id"}`)."""
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            data, options = await _upload(request)
            message = pb.SearchByVideoRequest(video=data, **_options(options))  # type: ignore[arg-type]
        else:
            similar = _parse(SimilarBody, await request.body())
            record = await run_in_threadpool(api.record, similar.clip_id, f"clip {similar.clip_id!r}")
            path = await run_in_threadpool(api.allowed_file, record)
            message = pb.SearchByVideoRequest(path=str(path), start_s=record.start_s, end_s=record.end_s,
                                              **_options(similar))  # type: ignore[arg-type]
        return api.answer(await run_in_threadpool(servicer.SearchByVideo, message, _CONTEXT))


def _index_routes(app: FastAPI, api: _Api, guard: list[Any]) -> None:
    servicer = api.servicer

    @app.get("/v1/stats", response_model=Stats, responses=_ERRORS, dependencies=guard)
    def stats() -> Stats:
        """What the index holds and which model and runtime serve it."""
        s = servicer.GetIndexStats(pb.GetIndexStatsRequest(), _CONTEXT)
        return Stats(clips=s.clips, videos=s.videos, dim=s.dim, model=s.model,
                     model_checksum=s.model_checksum, index_type=s.index_type, backend=s.backend,
                     device=s.device, size_bytes=s.size_bytes,
                     read_only=s.read_only, index_version=s.index_version, runtime=s.runtime,
                     runtime_device=s.runtime_device, runtime_dtype=s.runtime_dtype,
                     runtime_reason=s.runtime_reason, video_decoding=s.video_decoding)

    @app.delete("/v1/videos/{video_id:path}", response_model=Deleted, responses=_ERRORS, dependencies=guard)
    def delete_video(video_id: str) -> Deleted:
        """Remove every clip of a video from the index."""
        done = servicer.DeleteVideo(pb.DeleteVideoRequest(video_id=video_id), _CONTEXT)
        return Deleted(clips_deleted=done.clips_deleted, index_version=done.index_version)

    @app.post("/v1/ingest", response_model=Ingested, responses=_ERRORS, dependencies=guard)
    def ingest(body: IngestBody) -> Ingested:
        """Add videos under the allowed roots to the index; one result per file."""
        request = pb.IngestRequest(items=[pb.IngestItem(path=i.path, video_id=i.video_id, tags=i.tags)
                                          for i in body.items], replace=body.replace)
        if body.clip_length_s or body.clip_stride_s:
            request.clips.CopyFrom(pb.ClipOptions(length_s=body.clip_length_s, stride_s=body.clip_stride_s))
        done = servicer.Ingest(request, _CONTEXT)
        results = [IngestResult(path=r.path, video_id=r.video_id, clips=r.clips, error_code=r.error_code,
                                error=r.error) for r in done.results]
        return Ingested(results=results, clips_added=done.clips_added, index_version=done.index_version)


def _media_routes(app: FastAPI, api: _Api) -> None:
    guard = [Depends(api.auth.require_or_signed)]

    @app.get("/v1/videos/{video_id:path}/media", responses=_ERRORS, dependencies=guard)
    def media(video_id: str, range_header: Annotated[str | None, Header(alias="range")] = None) -> Response:
        """The indexed video file itself (ranges answer 206): only indexed videos under the allowed roots."""
        record = api.record(first_clip_id(video_id, 0), f"video {video_id!r}")
        return file_response(api.allowed_file(record), range_header)

    @app.get("/v1/clips/{clip_id:path}/thumbnail", responses=_ERRORS, dependencies=guard)
    def thumbnail(clip_id: str) -> Response:
        """A JPEG strip of frames across the clip, made on first request and kept with the index."""
        record = api.record(clip_id, f"clip {clip_id!r}")
        data = api.parts.thumbnails.get(record, api.allowed_file(record))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


def create_app(parts: HttpParts) -> FastAPI:
    settings = parts.settings
    api = _Api(parts)
    app = FastAPI(title="vidsearch", version="1", docs_url=None, redoc_url=None,
                  description="Search videos by text or by example; see docs/web.md.")
    errors.install(app)
    if settings.http.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.http.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Range"],
                           expose_headers=["Content-Range", "Content-Length"])
    app.add_middleware(BodyLimit, max_body_bytes=settings.limits.max_message_bytes,
                       max_upload_bytes=settings.limits.max_upload_bytes)
    guard = [Depends(api.auth.require)]
    _search_routes(app, api, guard)
    _index_routes(app, api, guard)
    _media_routes(app, api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(Path(str(STATIC / "index.html")), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=Path(str(STATIC))), name="static")
    return app


def _parse(model: type[_Body], raw: bytes | str) -> _Body:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


async def _upload(request: Request) -> tuple[bytes, SearchOptionsBody]:
    """The uploaded file (part `file`) and the search options (part `options`, JSON; optional)."""
    form = await request.form(max_files=1, max_fields=1)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise RequestError("the multipart body needs the video file as part 'file'")
    options = form.get("options")
    if options is not None and not isinstance(options, str):
        raise RequestError("part 'options' must be JSON text, not a file")
    data = await upload.read()
    if not data:
        raise RequestError("the uploaded file is empty")
    return data, _parse(SearchOptionsBody, options or "{}")

