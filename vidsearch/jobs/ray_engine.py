"""The Ray engine: the same stages on Ray Data, for a cluster (or one machine's Ray instance).

    from_items(videos) ─► map_batches(decode, CPU tasks) ─► map_batches(Embedder, actor pool[, GPUs])
    ─► driver: JobOutput (assemble, shard, ledger)

Decoding runs as CPU tasks, one video per call, yielding its clips in small batches and then one
end-marker row; the model runs in an actor pool (each actor opens the runtime once: the embedded
ONNX Runtime over a model repository every node can read, or a Triton service). Ray Data streams
with its own backpressure. The driver commits through the same ledger as the local engine, so a job
resumes the same way, whichever engine ran before.
"""

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import MissingDependencyError
from vidsearch.jobs.decoding import ClipTensor, DecodeSettings, EncodedVideo, Failure, VideoEnd, decode_video
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
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


def decode_batch(batch: Batch, settings: DecodeSettings) -> Iterator[Batch]:
    """Ray Data UDF: the videos of `batch` (one per call) → clip rows, then an end-marker row each."""
    shape = settings.preprocess.output_shape
    for video_id, path, uri in zip(batch["video_id"], batch["path"], batch["uri"], strict=True):
        pending: list[ClipTensor | VideoEnd] = []
        for event in decode_video(WorkItem(str(video_id), str(path), str(uri)), settings):
            assert not isinstance(event, EncodedVideo)  # a Ray job never has the server decoder (run.py)
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
        clips = batch["index"] >= 0
        vectors = np.zeros((len(clips), self._dim), np.float32)
        if clips.any():
            vectors[clips] = self._runtime.embed_video(np.ascontiguousarray(batch["tensor"][clips]))
        out = {key: value for key, value in batch.items() if key != "tensor"}
        out["embedding"] = vectors
        return out


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
        dataset: Any = videos.map_batches(decode, batch_size=1, batch_format="numpy", num_cpus=1,
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
