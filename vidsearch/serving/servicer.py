"""The `vidsearch.v1.SearchService` handlers: check the request, call the runtime and the index, answer.

Handlers only raise `vidsearch.errors` exceptions; authentication, the concurrency limit, metrics,
logging and the mapping of errors to status codes happen around them (`interceptors.py`), once for
every method. Models are reached only through the runtime, whichever backend it runs on.
"""

import io
import time
from collections.abc import Iterator

import grpc

from vidsearch.errors import LimitExceededError, NotFoundError, RequestError
from vidsearch.index import ClipIndex, SearchPage
from vidsearch.runtime.base import Runtime
from vidsearch.serving import classify, convert, moments
from vidsearch.serving.budget import ByteBudget, Reservation
from vidsearch.serving.deadline import RequestDeadline
from vidsearch.serving.ingest import Ingester
from vidsearch.serving.media import VideoModels, clip_spec, within
from vidsearch.serving.paths import AllowedRoots
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc
from vidsearch.serving.settings import ServerSettings
from vidsearch.serving.text_search import TextQuery, TextSearcher
from vidsearch.video import ClipSpec, VideoSource

DEFAULT_CLASSIFY_TOP_K = 5


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


class SearchServicer(pb_grpc.SearchServiceServicer):
    def __init__(self, runtime: Runtime, index: ClipIndex, settings: ServerSettings) -> None:
        self._runtime = runtime
        facts = runtime.facts
        self._model_name = facts.model_name
        self._index = index
        self._settings = settings
        self._limits = settings.limits
        self._videos = VideoModels(runtime, self._limits)
        self._uploads = ByteBudget(self._limits.max_upload_bytes_in_flight,
                                   "limits.max_upload_bytes_in_flight")
        self._roots = AllowedRoots(settings.allowed_roots)
        self._text_searcher = TextSearcher(runtime, index, max(1, facts.text_batch))
        vision = facts.vision
        self._ingester = Ingester(index, self._videos, self._roots, vision.version if vision else "",
                                  self._limits)
        classifier = facts.classifier
        labels = settings.classifier_labels
        self._class_names = classify.class_names(labels, classifier.width) if classifier else []
        self._classifier_name = classifier.name if classifier else self._model_name

    def _deadline(self, context: grpc.ServicerContext) -> RequestDeadline:
        return RequestDeadline(context, self._limits.default_deadline_s)

    # -- search ------------------------------------------------------------------------------------

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        started = time.perf_counter()
        deadline = self._deadline(context)
        query = TextQuery(convert.query_text(request.query, self._limits.max_query_chars),
                          convert.search_options(request, self._limits.max_name_chars),
                          request.page_token or None, started)
        answer = self._text_searcher.search(query, deadline.remaining())
        return self._response(answer.page, answer.embed_ms, answer.search_ms, started, request.merge_moments)

    def SearchByVideo(self, request: pb.SearchByVideoRequest, context: grpc.ServicerContext
                      ) -> pb.SearchResponse:
        started = time.perf_counter()
        deadline = self._deadline(context)
        options = convert.search_options(request, self._limits.max_name_chars)
        with self._uploads.hold() as held:
            source = self._source(request.WhichOneof("source"), request.video, request.path, held)
            clips, probed = self._videos.segment(source, self._clip_spec(), deadline)
            span = within(clips, request.start_s, request.end_s)
            outputs = self._videos.embed(source, span, probed, deadline)
        vector = outputs.values.mean(axis=0, keepdims=True)
        embed_ms = _ms(started)
        searched = time.perf_counter()
        page = self._index.search(vector, options, [request.page_token or None])[0]
        return self._response(page, embed_ms, _ms(searched), started, request.merge_moments)

    def _response(self, page: SearchPage, embed_ms: float, search_ms: float, started: float,
                  merge_moments: bool) -> pb.SearchResponse:
        response = convert.page_response(page)
        if merge_moments:
            moments.merge_response(response)
        response.model = self._model_name
        response.index_version = self._index.version
        timings = pb.Timings(embed_ms=embed_ms, search_ms=search_ms, total_ms=_ms(started))
        response.timings.CopyFrom(timings)
        return response

    # -- embeddings --------------------------------------------------------------------------------

    def EmbedText(self, request: pb.EmbedTextRequest, context: grpc.ServicerContext) -> pb.EmbedTextResponse:
        deadline = self._deadline(context)
        if not request.texts:
            raise RequestError("EmbedText needs at least one text")
        if len(request.texts) > self._limits.max_texts:
            raise LimitExceededError(f"{len(request.texts)} texts in one request; the limit is "
                                     f"{self._limits.max_texts}")
        texts = convert.texts(request.texts, max_chars=self._limits.max_query_chars, what="text")
        vectors = self._runtime.embed_text(texts, deadline.remaining())
        return pb.EmbedTextResponse(embeddings=convert.embeddings(vectors),
                                    model=self._model_name, dim=vectors.shape[1])

    def EmbedVideo(self, request_iterator: Iterator[pb.EmbedVideoRequest], context: grpc.ServicerContext
                   ) -> pb.EmbedVideoResponse:
        deadline = self._deadline(context)
        with self._uploads.hold() as held:
            source, options = self._upload(request_iterator, deadline, held)
            clips, probed = self._videos.segment(source, self._clip_spec(options), deadline)
            outputs = self._videos.embed(source, clips, probed, deadline)
        return pb.EmbedVideoResponse(
            clips=[pb.ClipEmbedding(index=c.index, start_s=c.start_s, end_s=c.end_s,
                                    embedding=pb.Embedding(values=row.tolist()))
                   for c, row in zip(outputs.clips, outputs.values, strict=True)],
            model=self._model_name, dim=outputs.values.shape[1], duration_s=probed.info.duration_s)

    # -- classification ----------------------------------------------------------------------------

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        deadline = self._deadline(context)
        top_k = request.top_k if request.HasField("top_k") else DEFAULT_CLASSIFY_TOP_K
        if top_k < 1:
            raise RequestError(f"top_k must be at least 1, got {top_k}")
        labels, prompts = self._prompts(request)  # checked before any video work
        with self._uploads.hold() as held:
            source = self._source(request.WhichOneof("source"), request.video, request.path, held)
            clips, probed = self._videos.segment(source, self._clip_spec(), deadline)
            span = within(clips, request.start_s, request.end_s)
            if labels:
                video = self._videos.embed(source, span, probed, deadline)
                text = self._runtime.embed_text(prompts, deadline.remaining())
                scores = classify.zero_shot(text, len(labels), video.values)
                method, names, count = "zero_shot", labels, len(video.clips)
            else:
                outputs = self._videos.classify(source, span, probed, deadline)
                scores = classify.classifier(outputs.values)
                method, names, count = "classifier", self._class_names, len(outputs.clips)
        ranked = classify.top(scores, names, top_k)
        model = self._classifier_name if method == "classifier" else self._model_name
        return pb.ClassifyResponse(labels=[pb.LabelScore(label=n, score=s) for n, s in ranked],
                                   model=model, method=method, clips=count)

    def _prompts(self, request: pb.ClassifyRequest) -> tuple[list[str], list[str]]:
        """The zero-shot labels and their prompts (labels × templates); none for the classifier."""
        if not request.labels:
            return [], []
        labels = convert.texts(request.labels, max_chars=self._limits.max_query_chars, what="label")
        templates = convert.texts(request.templates, max_chars=self._limits.max_query_chars, what="template")
        prompts = classify.prompts(labels, templates or classify.DEFAULT_TEMPLATES)
        if len(prompts) > self._limits.max_texts:
            raise LimitExceededError(f"{len(prompts)} prompts (labels × templates); the limit is "
                                     f"{self._limits.max_texts}")
        return labels, prompts

    # -- the index ---------------------------------------------------------------------------------

    def Ingest(self, request: pb.IngestRequest, context: grpc.ServicerContext) -> pb.IngestResponse:
        deadline = self._deadline(context)
        spec = self._clip_spec(request.clips if request.HasField("clips") else None)
        return self._ingester.ingest(request, spec, deadline)

    def DeleteVideo(self, request: pb.DeleteVideoRequest, context: grpc.ServicerContext
                    ) -> pb.DeleteVideoResponse:
        if not request.video_id:
            raise RequestError("DeleteVideo needs a video_id")
        convert.name(request.video_id, "video id", self._limits.max_name_chars)
        deleted = self._index.delete_videos([request.video_id])
        if not deleted:
            raise NotFoundError(f"video {request.video_id!r} is not in the index")
        return pb.DeleteVideoResponse(clips_deleted=deleted, index_version=self._index.version)

    def GetIndexStats(self, request: pb.GetIndexStatsRequest, context: grpc.ServicerContext) -> pb.IndexStats:
        stats, choice = self._index.stats(), self._runtime.choice
        return pb.IndexStats(clips=stats.clips, videos=stats.videos, dim=stats.dim, model=stats.model,
                             model_checksum=stats.model_checksum, index_type=stats.index_type,
                             backend=stats.backend, device=stats.device, size_bytes=stats.size_bytes,
                             read_only=stats.read_only, index_version=self._index.version,
                             runtime=self._runtime.kind, runtime_device=choice.device,
                             runtime_dtype=choice.dtype, runtime_reason=choice.reason,
                             video_decoding="server" if self._runtime.decodes_on_server else "pyav")

    def close(self) -> None:
        """Finish the text searches under way; the runtime and the index are the server's to close."""
        self._text_searcher.close()

    # -- video inputs ------------------------------------------------------------------------------

    def _clip_spec(self, options: pb.ClipOptions | None = None) -> ClipSpec:
        return clip_spec(self._settings.video, self._limits, options)

    def _source(self, which: str | None, data: bytes, path: str, held: Reservation) -> VideoSource:
        if which == "video":
            held.add(len(data))
            return data
        if which == "path":
            return self._roots.check(path).path
        raise RequestError("give the video as bytes (`video`) or as a path under an allowed root (`path`)")

    def _upload(self, messages: Iterator[pb.EmbedVideoRequest], deadline: RequestDeadline, held: Reservation
                ) -> tuple[VideoSource, pb.ClipOptions | None]:
        """The streamed input: one message naming a path, or the file's bytes in chunks (gathered in one
        buffer as they come, never joined into a second copy)."""
        upload = io.BytesIO()
        size = 0
        path: str | None = None
        options: pb.ClipOptions | None = None
        for message in messages:
            deadline.remaining()
            if message.HasField("clips"):
                options = message.clips
            kind = message.WhichOneof("input")
            if path is not None or (kind == "path" and size):
                raise RequestError("EmbedVideo takes one path or a stream of chunks, not both")
            if kind == "path":
                path = message.path
            elif kind == "chunk":
                size += len(message.chunk)
                if size > self._limits.max_upload_bytes:
                    raise LimitExceededError(f"the upload exceeds {self._limits.max_upload_bytes} bytes "
                                             "(limits.max_upload_bytes)")
                held.add(len(message.chunk))
                upload.write(message.chunk)
        if path is not None:
            return self._roots.check(path).path, options
        if not size:
            raise RequestError("EmbedVideo received no video: send a path or the file's bytes")
        return upload, options
