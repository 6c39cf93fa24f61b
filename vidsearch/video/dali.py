"""The `Preprocess` spec as a DALI pipeline: decode, resize and normalise clips on the GPU (or the CPU).

The pipeline takes, per sample, a whole encoded file (`encoded`, uint8) and the frame numbers of one
clip in presentation order (`frames`, int32), which `clip_frame_numbers` computes with the same
sampling and frame-choice rules as the PyAV path. It outputs `clip`: float32 shaped like
`spec.output_shape`. On a GPU the decoder is DALI's "mixed" backend (NVDEC: H.264, HEVC, AV1, VP8,
VP9, MJPEG, MPEG-4); on the CPU only VP8, VP9 and MJPEG decode. The same builder makes the graph a
Triton DALI model serialises (`device="gpu", device_id=None` works on a machine without a GPU).

Known limit: rotation metadata is not applied; `dali_read_clips` refuses rotated video.
"""

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, MissingDependencyError, VideoDecodeError
from vidsearch.video.clips import Clip
from vidsearch.video.plan import clip_frames
from vidsearch.video.preprocess import Preprocess
from vidsearch.video.probing import Probed, probe_timeline
from vidsearch.video.source import Deadline, LoadedInput, VideoSource, load_input, source_name
from vidsearch.video.timeline import Timeline

Device = Literal["cpu", "gpu"]
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
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
    """What a decoder that takes the encoded file (DALI, or the Triton ensemble's `video_preprocess`)
    is given for `clips`: the file read once into memory, its probe (pass `probed` when it was
    probed from that `load_input` result already), and each clip's frame numbers."""
    data = load_input(source, Deadline(source_name(source), time_limit_s))
    probed = probed or probe_timeline(data, time_limit_s)
    if probed.timeline is None:
        missing = "audio only, no video stream" if probed.info.has_audio else "no video stream"
        raise VideoDecodeError(data.name, missing)
    return data, probed, clip_frame_numbers(probed.timeline, clips, spec)


def dali_read_clips(source: VideoSource, clips: Sequence[Clip], spec: Preprocess, device: Device = "cpu",
                    batch_size: int = 4, device_id: int | None = None, time_limit_s: float = 120.0,
                    probed: Probed | None = None) -> Iterator[tuple[Clip, NDArray[np.float32]]]:
    """`read_clips` through DALI: (clip, tensor) for each clip, in order. For tests, tools, and serving
    where DALI is at hand; `device="gpu"` needs `device_id`.

    The file is read once, into memory (DALI takes the encoded bytes): pass a `load_input` result
    and its `probe_timeline` as `probed`, and nothing is read or demuxed again."""
    data, probed, numbers = encoded_clip_frames(source, clips, spec, time_limit_s, probed)
    info, name = probed.info, data.name
    if device == "cpu" and info.codec not in CPU_CODECS:
        raise VideoDecodeError(name, f"DALI decodes {info.codec} only on a GPU (on the CPU: "
                                     f"{', '.join(sorted(CPU_CODECS))}); use read_clips instead")
    if info.rotation:
        raise VideoDecodeError(name, f"rotated video ({info.rotation}°) is not supported by the DALI path")
    encoded = np.frombuffer(data.getbuffer(), dtype=np.uint8)
    pipe = build_pipeline(spec, device, batch_size, num_threads=1,
                          device_id=device_id if device == "gpu" else None)
    pipe.build()
    for first in range(0, len(clips), batch_size):
        batch = list(range(first, min(first + batch_size, len(clips))))
        padded = batch + [batch[-1]] * (batch_size - len(batch))  # DALI runs whole batches
        pipe.feed_input("encoded", [encoded] * batch_size)
        pipe.feed_input("frames", [numbers[i] for i in padded])
        try:
            (out,) = pipe.run()
        except RuntimeError as exc:
            raise VideoDecodeError(name, f"DALI failed: {str(exc).splitlines()[0]}") from None
        if device == "gpu":
            out = out.as_cpu()
        for position, i in enumerate(batch):
            yield clips[i], np.array(out[position], dtype=np.float32)
