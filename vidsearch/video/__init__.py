"""Video input: everything that turns a video file into model input.

`probe` describes an input (`probe_timeline` also keeps the timeline it demuxed, for the decoders);
`segment` cuts it into clips (fixed windows, optionally within the shots `detect_cuts` finds);
`sample_timestamps` picks the moments of a clip; `read_clips` decodes them with PyAV and applies a
`Preprocess` spec; `vidsearch.video.dali` builds the same spec as a DALI pipeline.
The rules are each written once: clip boundaries and the tail in `clips.py`, frame sampling in
`sampling.py`, which frame shows at a given time in `timeline.py`, the preprocessing steps in
`preprocess.py`.

Inputs are a path, the encoded bytes, or a seekable binary file. Names are imported on first use, so
reading a `Preprocess` spec does not load PyAV or torch.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "VideoInfo": "probing",
    "probe": "probing",
    "Probed": "probing",
    "probe_timeline": "probing",
    "Clip": "clips",
    "ClipSpec": "clips",
    "segment": "clips",
    "ShotSpec": "shots",
    "detect_cuts": "shots",
    "SamplingRule": "sampling",
    "sample_timestamps": "sampling",
    "Preprocess": "preprocess",
    "get_preprocess_preset": "preprocess",
    "list_preprocess_presets": "preprocess",
    "ClipFrames": "decode",
    "ClipStream": "decode",
    "DecodeStats": "decode",
    "FrameStream": "decode",
    "ReadOptions": "decode",
    "read_clips": "decode",
    "read_frames": "decode",
    "VideoSource": "source",
}

__all__ = [
    "Clip",
    "ClipFrames",
    "ClipSpec",
    "ClipStream",
    "DecodeStats",
    "FrameStream",
    "Preprocess",
    "Probed",
    "ReadOptions",
    "SamplingRule",
    "ShotSpec",
    "VideoInfo",
    "VideoSource",
    "detect_cuts",
    "get_preprocess_preset",
    "list_preprocess_presets",
    "probe",
    "probe_timeline",
    "read_clips",
    "read_frames",
    "sample_timestamps",
    "segment",
]

if TYPE_CHECKING:
    from vidsearch.video.clips import Clip, ClipSpec, segment
    from vidsearch.video.decode import (
        ClipFrames,
        ClipStream,
        DecodeStats,
        FrameStream,
        ReadOptions,
        read_clips,
        read_frames,
    )
    from vidsearch.video.preprocess import Preprocess, get_preprocess_preset, list_preprocess_presets
    from vidsearch.video.probing import Probed, VideoInfo, probe, probe_timeline
    from vidsearch.video.sampling import SamplingRule, sample_timestamps
    from vidsearch.video.shots import ShotSpec, detect_cuts
    from vidsearch.video.source import VideoSource


__getattr__ = lazy_exports(__name__, _EXPORTS)
