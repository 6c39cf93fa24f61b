"""The JSON bodies of the HTTP API: requests refuse unknown fields, answers are what `/openapi.json` shows."""

from pydantic import BaseModel, ConfigDict, Field

INT32_MAX = 2**31 - 1  # the gRPC messages these fill hold int32


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchOptionsBody(_Request):
    """What every search takes: how many hits, filters, grouping, merging and the page."""

    top_k: int = Field(default=10, ge=1, le=INT32_MAX)
    page_size: int | None = Field(default=None, ge=1, le=INT32_MAX)
    video_ids: list[str] = []
    tags: list[str] = []
    group_by_video: bool = False
    merge_moments: bool = False
    page_token: str = ""


class SearchBody(SearchOptionsBody):
    query: str


class SimilarBody(SearchOptionsBody):
    """"More like this": the clip's own span of its video is the query."""

    clip_id: str


class IngestItemBody(_Request):
    path: str
    video_id: str = ""
    tags: list[str] = []


class IngestBody(_Request):
    items: list[IngestItemBody]
    replace: bool = False
    clip_length_s: float = Field(default=0.0, ge=0)  # 0: the server's
    clip_stride_s: float = Field(default=0.0, ge=0)


class Hit(BaseModel):
    clip_id: str
    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    tags: list[str]
    clip_ids: list[str]  # merge_moments: the clips of the moment; otherwise just clip_id
    thumbnail_url: str
    media_url: str


class VideoHits(BaseModel):
    video_id: str
    hits: list[Hit]


class SearchAnswer(BaseModel):
    hits: list[Hit]  # when not grouping
    videos: list[VideoHits]  # when grouping
    next_page_token: str
    model: str
    index_version: str
    timings_ms: dict[str, float]


class Stats(BaseModel):
    clips: int
    videos: int
    dim: int
    model: str
    model_checksum: str
    index_type: str
    backend: str
    device: str
    size_bytes: int
    read_only: bool
    index_version: str
    runtime: str
    runtime_device: str
    runtime_dtype: str
    runtime_reason: str
    video_decoding: str  # "pyav" (in this process) or "server" (the Triton server decodes)


class Deleted(BaseModel):
    clips_deleted: int
    index_version: str


class IngestResult(BaseModel):
    path: str
    video_id: str
    clips: int
    error_code: str  # empty on success, else the status name (NOT_FOUND, INVALID_ARGUMENT, …)
    error: str


class Ingested(BaseModel):
    results: list[IngestResult]
    clips_added: int
    index_version: str


class Problem(BaseModel):
    """Every error answer: the HTTP status, the status name shared with gRPC, and what was wrong."""

    status: int
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: Problem
