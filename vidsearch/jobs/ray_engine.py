"""The Ray engine: the same stages on Ray Data, for a cluster (or one machine's Ray instance).

    from_items(videos) ─► map_batches(decode, CPU tasks) ─► map_batches(Embedder, actor pool[, GPUs])
    ─► driver: JobOutput (assemble, shard, ledger)

Decoding runs as CPU tasks, one video per call, yielding its clips in small batches and then one
end-marker row. A task decodes in a process of its own (one per Ray worker, kept across its tasks,
so a DALI decoder session lives from video to video) under the local engine's watchdog: a video
stuck past its time limit (a read on a hung mount), or whose process dies, ends as a failure and the
task goes on, instead of holding its Ray worker forever. With DALI on a GPU each decoding task holds
`--decode-gpus` of a GPU (Ray hides the GPUs from a task that asks for none). With the `server`
decoder (a Triton runtime whose server decodes) a task reads and demuxes its video only, and sends one
row on: the encoded file with each clip's frame numbers, and the video's end; the actor hands them to
the server (`embed_on_server`) and emits the same clip and end rows as for decoded clips. The model runs in an
actor pool (each actor opens the runtime once: the embedded ONNX Runtime over a model repository
every node can read, or a Triton service). Ray Data streams
with its own backpressure. The driver commits through the same ledger as the local engine, so a job
resumes the same way, whichever engine ran before.
"""

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import MissingDependencyError
from vidsearch.jobs.decoding import ClipTensor, DecodeSettings, EncodedVideo, Failure, VideoEnd, WorkerProbed
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
from vidsearch.jobs.pipeline import embed_on_server
from vidsearch.jobs.processes import POLL_S, DecodeProcess, VideoWatch
from vidsearch.jobs.spec import EmbedJob
from vidsearch.runtime import RepositoryModels, RuntimeConfig
from vidsearch.video import Clip

_CLIPS_PER_BLOCK = 8  # clips a decode call yields at a time (bounds its memory)
_MAX_INPUT_BLOCKS = 4096  # one video per block for parallel decode tasks, up to this many blocks
Batch = dict[str, NDArray[Any]]


def _rows(events: Sequence[ClipTensor | VideoEnd], shape: tuple[int, ...]) -> Batch:
    """Events as one columnar batch; an end marker has clip index -1 and a zero tensor."""
    clips = [e for e in events if isinstance(e, ClipTensor)]
    ends = [e for e in events if isinstance(e, VideoEnd)]
    failures = [e.failure for e in ends]
    zero = np.zeros((len(ends), *shape), np.float32)
    return {
        "video_id": np.array([e.video_id for e in clips] + [e.video_id for e in ends], object),
        "index": np.array([e.clip.index for e in clips] + [-1] * len(ends), np.int64),
        "start_s": np.array([e.clip.start_s for e in clips] + [0.0] * len(ends), np.float64),
        "end_s": np.array([e.clip.end_s for e in clips] + [0.0] * len(ends), np.float64),
        "count": np.array([0] * len(clips) + [e.clips for e in ends], np.int64),
        "fatal": np.array([False] * len(clips) + [e.fatal for e in ends], bool),
        "error_type": np.array([""] * len(clips) + [f.error_type if f else "" for f in failures], object),
        "message": np.array([""] * len(clips) + [f.message if f else "" for f in failures], object),
        "tensor": np.concatenate([np.stack([e.tensor for e in clips]), zero]) if clips else zero,
    }


_decoder: DecodeProcess | None = None
"""This Ray worker's decoding process, kept across its tasks (it dies with the worker)."""


def _decoding_process(settings: DecodeSettings) -> DecodeProcess:
    global _decoder
    if _decoder is not None and _decoder.settings != settings:
        _decoder.stop()
        _decoder = None
    if _decoder is None:
        context = multiprocessing.get_context("spawn")
        _decoder = DecodeProcess(context, os.getpid(), settings, _CLIPS_PER_BLOCK)
    return _decoder


def _given_up(process: DecodeProcess) -> None:
    global _decoder
    process.stop()
    _decoder = None


def decode_watched(item: WorkItem, settings: DecodeSettings
                   ) -> Iterator[ClipTensor | EncodedVideo | VideoEnd]:
    """`decode_video` of one item, run in this worker's decoding process under the same watchdog as
    the local engine's: the clips, then exactly one `VideoEnd`."""
    process = _decoding_process(settings)
    process.give(item)
    watch = VideoWatch(item.video_id, settings.time_limit_s(None))
    while True:
        if not process.events.poll(POLL_S):
            if watch.overdue():
                _given_up(process)
                yield watch.timed_out(item.uri)
                return
            continue
        try:
            event = process.receive()
        except (EOFError, OSError):
            code = process.exit_code()
            _given_up(process)
            yield watch.crashed(item.uri, code)
            return
        if isinstance(event, WorkerProbed):
            watch.limit_s = settings.time_limit_s(event.duration_s)
            watch.progressed()
        elif isinstance(event, ClipTensor | EncodedVideo | VideoEnd):
            watch.progressed()
            yield event
            if isinstance(event, VideoEnd):
                return


def _objects(*values: object) -> NDArray[Any]:
    """A column of Python objects (numpy would take a dataclass apart)."""
    column = np.empty(len(values), object)
    column[:] = values
    return column


def decode_batch(batch: Batch, settings: DecodeSettings) -> Iterator[Batch]:
    """Ray Data UDF: the videos of `batch` (one per call) → clip rows, then an end-marker row each;
    with the server decoder, one row each holding the encoded video (None if it failed) and its end."""
    shape = settings.preprocess.output_shape
    for video_id, path, uri in zip(batch["video_id"], batch["path"], batch["uri"], strict=True):
        pending: list[ClipTensor | VideoEnd] = []
        encoded: EncodedVideo | None = None
        for event in decode_watched(WorkItem(str(video_id), str(path), str(uri)), settings):
            if isinstance(event, EncodedVideo):
                encoded = event
                continue
            if settings.decoder == "server" and isinstance(event, VideoEnd):
                yield {"video_id": _objects(event.video_id), "uri": _objects(str(uri)),
                       "encoded": _objects(encoded), "end": _objects(event)}
                continue
            pending.append(event)
            if len(pending) == _CLIPS_PER_BLOCK or isinstance(event, VideoEnd):
                yield _rows(pending, shape)
                pending = []


class Embedder:
    """Ray Data actor: opens the runtime once, embeds the clip rows of each batch."""

    def __init__(self, config: RuntimeConfig, models: RepositoryModels) -> None:
        from vidsearch.runtime import open_runtime

        self._runtime = open_runtime(config, models=models)
        self._dim = self._runtime.facts.dim

    def __call__(self, batch: Batch) -> Batch:
        if "encoded" in batch:
            return self._on_server(batch)
        clips = batch["index"] >= 0
        vectors = np.zeros((len(clips), self._dim), np.float32)
        if clips.any():
            vectors[clips] = self._runtime.embed_video(np.ascontiguousarray(batch["tensor"][clips]))
        out = {key: value for key, value in batch.items() if key != "tensor"}
        out["embedding"] = vectors
        return out

    def _on_server(self, batch: Batch) -> Batch:
        """Rows of encoded videos → their clips' rows and end rows, as `__call__` gives for clips."""
        events: list[ClipTensor | VideoEnd] = []
        for encoded, end, uri in zip(batch["encoded"], batch["end"], batch["uri"], strict=True):
            if encoded is not None:
                embedded = embed_on_server(self._runtime, encoded, str(uri))
                events += (ClipTensor(embedded.video_id, clip, vector)
                           for clip, vector in zip(embedded.clips, embedded.vectors, strict=True))
                end = embedded.end(end)
            events.append(end)
        rows = _rows(events, (self._dim,))
        rows["embedding"] = rows.pop("tensor")
        return rows


def _deliver(batch: Batch, output: JobOutput) -> None:
    """Hand a batch to the output a video at a time: its clips' embeddings as one slice of the column,
    not row by row."""
    index = batch["index"]
    clip_rows = np.flatnonzero(index >= 0)
    video_ids = batch["video_id"][clip_rows]
    for video_id in dict.fromkeys(video_ids.tolist()):  # in order of first appearance
        rows = clip_rows[video_ids == video_id]
        clips = [Clip(*values) for values in zip(index[rows].tolist(), batch["start_s"][rows].tolist(),
                                                 batch["end_s"][rows].tolist(), strict=True)]
        output.clips(str(video_id), clips, np.asarray(batch["embedding"][rows], np.float32))
    for row in np.flatnonzero(index < 0).tolist():
        video_id, error, message = (str(batch[key][row]) for key in ("video_id", "error_type", "message"))
        failure = Failure(video_id, output.uri(video_id), error, message) if error else None
        output.end(VideoEnd(video_id, int(batch["count"][row]), failure, bool(batch["fatal"][row])))


def run_ray(job: EmbedJob, models: RepositoryModels, items: Sequence[WorkItem], settings: DecodeSettings,
            output: JobOutput, batch_size: int) -> None:
    """Run the stages on Ray Data (joining `job.ray_address`, or starting a local Ray if none is up)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine ray needs Ray Data: pip install 'vidsearch[ray]' ({exc})") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=job.ray_address, include_dashboard=False, log_to_driver=False)
    try:
        blocks = min(len(items), _MAX_INPUT_BLOCKS)
        videos = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
        decode: Any = decode_batch  # Ray's stubs do not take a generator with keyword arguments
        gpu_decode = settings.decoder == "dali" and settings.dali_device == "gpu"
        dataset: Any = videos.map_batches(decode, batch_size=1, batch_format="numpy", num_cpus=1,
                                          num_gpus=job.decode_gpus if gpu_decode else None,
                                          fn_kwargs={"settings": settings})
        dataset = dataset.map_batches(
            Embedder, fn_constructor_kwargs={"config": job.runtime, "models": models}, batch_size=batch_size,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=job.actors),
            num_gpus=job.num_gpus or None, num_cpus=1,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            _deliver(batch, output)
        output.flush()
    finally:
        if started_here:
            ray.shutdown()
