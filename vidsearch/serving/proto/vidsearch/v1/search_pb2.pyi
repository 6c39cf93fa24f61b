from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimeRange(_message.Message):
    __slots__ = ("start_s", "end_s")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("video_ids", "tags", "time_range")
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    time_range: TimeRange
    def __init__(self, video_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "top_k", "filter", "group_by_video", "page_token", "page_size", "nprobe", "ef_search", "merge_moments")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_VIDEO_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    MERGE_MOMENTS_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    filter: Filter
    group_by_video: bool
    page_token: str
    page_size: int
    nprobe: int
    ef_search: int
    merge_moments: bool
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., group_by_video: _Optional[bool] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., nprobe: _Optional[int] = ..., ef_search: _Optional[int] = ..., merge_moments: _Optional[bool] = ...) -> None: ...

class SearchByVideoRequest(_message.Message):
    __slots__ = ("video", "path", "start_s", "end_s", "top_k", "filter", "group_by_video", "page_token", "page_size", "nprobe", "ef_search", "merge_moments")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_VIDEO_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    MERGE_MOMENTS_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    path: str
    start_s: float
    end_s: float
    top_k: int
    filter: Filter
    group_by_video: bool
    page_token: str
    page_size: int
    nprobe: int
    ef_search: int
    merge_moments: bool
    def __init__(self, video: _Optional[bytes] = ..., path: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., group_by_video: _Optional[bool] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., nprobe: _Optional[int] = ..., ef_search: _Optional[int] = ..., merge_moments: _Optional[bool] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("clip_id", "video_id", "uri", "start_s", "end_s", "score", "tags", "clip_ids")
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CLIP_IDS_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    clip_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, clip_id: _Optional[str] = ..., video_id: _Optional[str] = ..., uri: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., score: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., clip_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class VideoGroup(_message.Message):
    __slots__ = ("video_id", "hits")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, video_id: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("embed_ms", "search_ms", "total_ms")
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    embed_ms: float
    search_ms: float
    total_ms: float
    def __init__(self, embed_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "groups", "next_page_token", "model", "index_version", "timings")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    groups: _containers.RepeatedCompositeFieldContainer[VideoGroup]
    next_page_token: str
    model: str
    index_version: str
    timings: Timings
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[VideoGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., model: _Optional[str] = ..., index_version: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedTextRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("embeddings", "model", "dim")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    model: str
    dim: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class ClipOptions(_message.Message):
    __slots__ = ("length_s", "stride_s")
    LENGTH_S_FIELD_NUMBER: _ClassVar[int]
    STRIDE_S_FIELD_NUMBER: _ClassVar[int]
    length_s: float
    stride_s: float
    def __init__(self, length_s: _Optional[float] = ..., stride_s: _Optional[float] = ...) -> None: ...

class EmbedVideoRequest(_message.Message):
    __slots__ = ("chunk", "path", "clips")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    path: str
    clips: ClipOptions
    def __init__(self, chunk: _Optional[bytes] = ..., path: _Optional[str] = ..., clips: _Optional[_Union[ClipOptions, _Mapping]] = ...) -> None: ...

class ClipEmbedding(_message.Message):
    __slots__ = ("index", "start_s", "end_s", "embedding")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_s: float
    end_s: float
    embedding: Embedding
    def __init__(self, index: _Optional[int] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ...) -> None: ...

class EmbedVideoResponse(_message.Message):
    __slots__ = ("clips", "model", "dim", "duration_s")
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    clips: _containers.RepeatedCompositeFieldContainer[ClipEmbedding]
    model: str
    dim: int
    duration_s: float
    def __init__(self, clips: _Optional[_Iterable[_Union[ClipEmbedding, _Mapping]]] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ..., duration_s: _Optional[float] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("video", "path", "start_s", "end_s", "labels", "templates", "top_k")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    path: str
    start_s: float
    end_s: float
    labels: _containers.RepeatedScalarFieldContainer[str]
    templates: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    def __init__(self, video: _Optional[bytes] = ..., path: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., labels: _Optional[_Iterable[str]] = ..., templates: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("labels", "model", "method", "clips")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelScore]
    model: str
    method: str
    clips: int
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., model: _Optional[str] = ..., method: _Optional[str] = ..., clips: _Optional[int] = ...) -> None: ...

class IngestItem(_message.Message):
    __slots__ = ("path", "video_id", "tags")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    path: str
    video_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., video_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("items", "clips", "replace")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    clips: ClipOptions
    replace: bool
    def __init__(self, items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ..., clips: _Optional[_Union[ClipOptions, _Mapping]] = ..., replace: _Optional[bool] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("path", "video_id", "clips", "error_code", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    video_id: str
    clips: int
    error_code: str
    error: str
    def __init__(self, path: _Optional[str] = ..., video_id: _Optional[str] = ..., clips: _Optional[int] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("results", "clips_added", "index_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CLIPS_ADDED_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    clips_added: int
    index_version: str
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ..., clips_added: _Optional[int] = ..., index_version: _Optional[str] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    def __init__(self, video_id: _Optional[str] = ...) -> None: ...

class DeleteVideoResponse(_message.Message):
    __slots__ = ("clips_deleted", "index_version")
    CLIPS_DELETED_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    clips_deleted: int
    index_version: str
    def __init__(self, clips_deleted: _Optional[int] = ..., index_version: _Optional[str] = ...) -> None: ...

class GetIndexStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexStats(_message.Message):
    __slots__ = ("clips", "videos", "dim", "model", "model_checksum", "index_type", "backend", "device", "size_bytes", "read_only", "index_version", "runtime", "runtime_device", "runtime_dtype", "runtime_reason", "video_decoding")
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_DEVICE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_DTYPE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_REASON_FIELD_NUMBER: _ClassVar[int]
    VIDEO_DECODING_FIELD_NUMBER: _ClassVar[int]
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
    video_decoding: str
    def __init__(self, clips: _Optional[int] = ..., videos: _Optional[int] = ..., dim: _Optional[int] = ..., model: _Optional[str] = ..., model_checksum: _Optional[str] = ..., index_type: _Optional[str] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., size_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ..., index_version: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_device: _Optional[str] = ..., runtime_dtype: _Optional[str] = ..., runtime_reason: _Optional[str] = ..., video_decoding: _Optional[str] = ...) -> None: ...
