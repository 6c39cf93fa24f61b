"""The `Preprocess` spec as a DALI pipeline: decode, resize and normalise clips on the GPU (or the CPU).

The pipeline takes, per sample, a whole encoded file (`encoded`, uint8) and frame numbers in
presentation order (`frames`, int32), computed with the same sampling and frame-choice rules as the
PyAV path (`clip_frame_numbers`). It outputs those frames preprocessed: float32, one clip's shape
(`spec.output_shape`) when the numbers are one clip's. On a GPU the decoder is DALI's "mixed" backend
(NVDEC: H.264, HEVC, AV1, VP8, VP9, MJPEG, MPEG-4); on the CPU only VP8, VP9 and MJPEG decode. The
same builder makes the graph a Triton DALI model serialises (one clip per sample; `device="gpu",
device_id=None` works on a machine without a GPU).

The batch path (`dali_read_clips`, `DaliSession`) feeds each video once: one sample carries the union
of the frame numbers of all its clips, every frame is preprocessed on its own, and the clips are cut
from the output. Preprocessing is per frame, so a clip cut from the union equals the clip decoded
alone. A session (one built pipeline) serves video after video in its process or thread; several
processes or threads make several decoder sessions at once. A session whose run fails is rebuilt for
the next video. A video DALI cannot decode here (codec, NVDEC's size limits, rotation) or whose
decode fails is decoded by PyAV instead when the caller allows (`fallback=True`), with a warning.
"""

import logging
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, MissingDependencyError, VideoDecodeError
from vidsearch.video.clips import Clip
from vidsearch.video.decode import ReadOptions, check_declared_size, read_clips
from vidsearch.video.plan import clip_frames
from vidsearch.video.preprocess import Preprocess
from vidsearch.video.probing import Probed, VideoInfo, probe_timeline
from vidsearch.video.source import Deadline, LoadedInput, VideoSource, load_input, source_name
from vidsearch.video.timeline import Timeline

logger = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
# What NVDEC decodes, and its largest coded width/height per codec (NVIDIA Video Codec SDK support
# matrix, Ampere/Hopper): larger frames go to PyAV. Profiles NVDEC lacks (4:2:2/4:4:4 H.264, 12-bit)
# are not visible before decoding; their decode fails and falls back the same way.
GPU_MAX_SIDE = {"h264": 4096, "hevc": 8192, "av1": 8192, "libdav1d": 8192, "libaom-av1": 8192, "vp9": 8192,
                "vp8": 4096, "mpeg4": 2032, "mjpeg": 16384}  # AV1 under the names of FFmpeg's decoders
# Frames one sample carries at most: a longer video is fed in several samples of whole clips, so
# decoded frames held at once stay bounded (256 frames of 1080p RGB are 1.6 GB).
MAX_FRAMES_PER_SAMPLE = 256
_INSTALL = "pip install 'vidsearch[gpu]' (or: pip install nvidia-dali-cuda120)"


def _dali() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
    except ImportError as exc:
        raise MissingDependencyError(f"the DALI pipeline needs NVIDIA DALI: {_INSTALL} ({exc})") from None
    return dali, fn, types


def build_pipeline(spec: Preprocess, device: Device = "gpu", batch_size: int = 1, num_threads: int = 1,
                   device_id: int | None = None) -> Any:
    """A DALI pipeline (not yet built) implementing `spec`; inputs `encoded` and `frames`, output `clip`.

    `device_id` None makes a CPU-only pipeline object: enough to run the CPU variant, and to define
    and serialise the GPU variant on a machine without one. Running the GPU variant needs an id.
    """
    if device not in ("cpu", "gpu"):
        raise ConfigError(f"dali: device must be 'cpu' or 'gpu', got {device!r}")
    dali, fn, types = _dali()
    pipe = dali.Pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                         prefetch_queue_depth=1)  # one batch in, one out: inputs are fed per call
    interp = types.INTERP_LINEAR if spec.interpolation == "bilinear" else types.INTERP_CUBIC
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
        video = fn.decoders.video(encoded, frames=frames, device="mixed" if device == "gpu" else "cpu")
        resize_args: dict[str, Any] = (
            {"size": list(spec.size)} if spec.resize == "direct" else {"resize_shorter": spec.short_side}
        )
        video = fn.resize(video, interp_type=interp, antialias=spec.antialias, subpixel_scale=False,
                          **resize_args)
        if spec.channels == "BGR":
            video = fn.color_space_conversion(video, image_type=types.RGB, output_type=types.BGR)
        mean, std = list(spec.mean), list(spec.std)
        if spec.channels == "BGR":
            mean, std = mean[::-1], std[::-1]
        clip = fn.crop_mirror_normalize(
            video,
            crop=list(spec.size) if spec.resize == "short_side_crop" else None,
            mean=[255.0 * m for m in mean],
            std=[255.0 * s for s in std],
            dtype=types.FLOAT,
            output_layout="FCHW" if spec.layout == "TCHW" else "CFHW",
        )
        pipe.set_outputs(clip)
    return pipe


def clip_frame_numbers(
    timeline: Timeline, clips: Sequence[Clip], spec: Preprocess
) -> list[NDArray[np.int32]]:
    """The `frames` input for each clip: frame numbers in presentation order."""
    chosen = clip_frames(timeline, clips, spec.sampling)
    return [np.asarray(numbers, dtype=np.int32) for _, numbers in chosen]


def encoded_clip_frames(source: VideoSource, clips: Sequence[Clip], spec: Preprocess, time_limit_s: float,
                        probed: Probed | None = None) -> tuple[LoadedInput, Probed, list[NDArray[np.int32]]]:
    """What a decoder that takes the encoded file (the Triton ensemble's `video_preprocess`) is given
    for `clips`: the file read once into memory, its probe (pass `probed` when it was probed from that
    `load_input` result already), and each clip's frame numbers."""
    data = load_input(source, Deadline(source_name(source), time_limit_s))
    probed = probed or probe_timeline(data, time_limit_s)
    if probed.timeline is None:
        missing = "audio only, no video stream" if probed.info.has_audio else "no video stream"
        raise VideoDecodeError(data.name, missing)
    return data, probed, clip_frame_numbers(probed.timeline, clips, spec)


def _samples(numbers: list[NDArray[np.int32]], max_frames: int) -> Iterator[range]:
    """Runs of consecutive clips whose frames (the union) fit in one sample; a clip is never split."""
    first, union = 0, np.zeros(0, np.int32)
    for i, clip in enumerate(numbers):
        grown = np.union1d(union, clip)
        if i > first and len(grown) > max_frames:
            yield range(first, i)
            first, grown = i, np.unique(clip)
        union = grown
    if numbers:
        yield range(first, len(numbers))


def refusal(info: VideoInfo, device: Device) -> str | None:
    """Why DALI on `device` cannot decode this video (None: it can)."""
    if info.rotation:
        return f"rotated video ({info.rotation}°): DALI applies no rotation metadata"
    if device == "cpu":
        if info.codec not in CPU_CODECS:
            return f"DALI decodes {info.codec} only on a GPU (on the CPU: {', '.join(sorted(CPU_CODECS))})"
        return None
    side = GPU_MAX_SIDE.get(info.codec)
    if side is None:
        return f"NVDEC does not decode {info.codec}"
    if max(info.width, info.height) > side:
        return f"{info.width}×{info.height} exceeds NVDEC's {side}×{side} for {info.codec}"
    return None


class DaliSession:
    """One decoder session: a DALI pipeline built once and run video after video, one sample per video
    (or per `max_frames` frames of whole clips). Not thread-safe: one per thread (`session_for`).
    `feeds` counts the samples that carried encoded bytes, `builds` the pipelines built."""

    def __init__(self, spec: Preprocess, device: Device = "cpu", device_id: int | None = None,
                 num_threads: int = 1, max_frames: int = MAX_FRAMES_PER_SAMPLE) -> None:
        if device == "gpu" and device_id is None:
            raise ConfigError("dali: decoding on the GPU needs a device_id")
        self.spec, self.device, self.device_id = spec, device, device_id
        self.num_threads, self.max_frames = num_threads, max_frames
        self.feeds = self.builds = 0
        self._pipe: Any = None

    def _pipeline(self) -> Any:
        if self._pipe is None:
            pipe = build_pipeline(self.spec, self.device, 1, self.num_threads,
                                  self.device_id if self.device == "gpu" else None)
            pipe.build()
            self._pipe, self.builds = pipe, self.builds + 1
        return self._pipe

    def decode(self, name: str, encoded: NDArray[np.uint8], timeline: Timeline, clips: Sequence[Clip]
               ) -> Iterator[tuple[Clip, NDArray[np.float32]]]:
        """(clip, tensor) for each clip, in order. A failed run drops the pipeline (the next video gets
        a new one) and raises `VideoDecodeError` naming `name`."""
        numbers = clip_frame_numbers(timeline, clips, self.spec)
        frame_axis = 0 if self.spec.layout == "TCHW" else 1
        for run in _samples(numbers, self.max_frames):
            union = np.unique(np.concatenate([numbers[i] for i in run]))
            try:
                pipe = self._pipeline()  # building fails too where the GPU or its memory is not there
                self.feeds += 1
                pipe.feed_input("encoded", [encoded])
                pipe.feed_input("frames", [union])
                (out,) = pipe.run()
                frames = np.asarray(out.as_cpu()[0] if self.device == "gpu" else out[0], dtype=np.float32)
            except RuntimeError as exc:
                self._pipe = None  # a session that failed is not trusted again: rebuilt on next use
                raise VideoDecodeError(name, f"DALI failed: {_cause(exc)}") from None
            for i in run:
                yield clips[i], np.take(frames, np.searchsorted(union, numbers[i]), axis=frame_axis)


def _cause(exc: RuntimeError) -> str:
    """The line of a DALI error that says what went wrong (it follows "encountered:" in DALI's
    message, after the operator's traceback), else the message's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:
        return lines[lines.index("encountered:") + 1]
    return lines[0] if lines else type(exc).__name__


_sessions = threading.local()


def session_for(spec: Preprocess, device: Device, device_id: int | None) -> DaliSession:
    """This thread's session for `spec` on `device`: built once, reused for every later video."""
    cache: dict[tuple[Preprocess, Device, int | None], DaliSession]
    cache = _sessions.__dict__.setdefault("cache", {})
    key = (spec, device, device_id)
    if key not in cache:
        cache[key] = DaliSession(spec, device, device_id)
    return cache[key]


class DaliClips:
    """What `dali_read_clips` returns: iterate once for (clip, tensor) in order. `decoder` says which
    decoder produced the clips ("pyav" after a fallback); `failed_clips` lists, once iterated, the
    clips a PyAV fallback left out (`ReadOptions.on_clip_error="skip"`), as `DecodeStats` does."""

    def __init__(self, data: LoadedInput, probed: Probed, clips: Sequence[Clip], session: DaliSession,
                 options: ReadOptions, fallback: bool) -> None:
        self._data, self._probed, self._clips = data, probed, list(clips)
        self._session, self._options, self._fallback = session, options, fallback
        self.decoder: Literal["dali", "pyav"] = "dali"
        self.failed_clips: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[tuple[Clip, NDArray[np.float32]]]:
        name, info, timeline = self._data.name, self._probed.info, self._probed.timeline
        if timeline is None:
            raise VideoDecodeError(name, "audio only, no video stream" if info.has_audio
                                   else "no video stream")
        if timeline.frame_count == 0:
            raise VideoDecodeError(name, "zero duration: the video stream has no frames")
        check_declared_size(name, info.width, info.height, self._options.max_pixels)
        done = 0
        reason = refusal(info, self._session.device)
        if reason is None:
            encoded = np.frombuffer(self._data.getbuffer(), dtype=np.uint8)
            try:
                for item in self._session.decode(name, encoded, timeline, self._clips):
                    done += 1
                    yield item
                return
            except VideoDecodeError as exc:
                reason = exc.reason
                if not self._fallback:
                    raise
        elif not self._fallback:
            raise VideoDecodeError(name, f"{reason}; use read_clips instead")
        logger.warning("%s: %s; decoding it with PyAV instead", name, reason)
        self.decoder = "pyav"
        stream = read_clips(self._data, self._clips[done:], self.spec, self._options, timeline)
        yield from stream
        self.failed_clips.extend(stream.stats.failed_clips)

    @property
    def spec(self) -> Preprocess:
        return self._session.spec


def dali_read_clips(source: VideoSource, clips: Sequence[Clip], spec: Preprocess, device: Device = "cpu",
                    device_id: int | None = None, options: ReadOptions | None = None,
                    probed: Probed | None = None, fallback: bool = False,
                    session: DaliSession | None = None) -> DaliClips:
    """`read_clips` through DALI: (clip, tensor) for each clip, in order; each video fed once.
    `device="gpu"` needs `device_id`. `fallback`: a video DALI cannot decode goes to PyAV with a
    warning (otherwise: `VideoDecodeError`). `session`: the decoder session to use (default: this
    thread's, built once and reused).

    The file is read once, into memory (DALI takes the encoded bytes): pass a `load_input` result
    and its `probe_timeline` as `probed`, and nothing is read or demuxed again, a fallback included."""
    options = options or ReadOptions()
    data = load_input(source, Deadline(source_name(source), options.time_limit_s))
    probed = probed or probe_timeline(data, options.time_limit_s)
    session = session or session_for(spec, device, device_id if device == "gpu" else None)
    if session.spec != spec or session.device != device:
        raise ConfigError("dali: the session was built for another spec or device")
    return DaliClips(data, probed, clips, session, options, fallback)
