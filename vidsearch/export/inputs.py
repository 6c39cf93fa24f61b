"""Inputs for the parity checks and for int8 calibration.

Random inputs probe the whole numeric range; real inputs are made the way served inputs are:
captions through the model's own tokenizer (built from its `vidsearch.json` description), clips
decoded and preprocessed by `vidsearch.video` from the user's sample videos or, without any, from a
short H.264 clip generated here and decoded like a file.
"""

import io
import itertools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError
from vidsearch.export.graphs import Graph, TensorSpec
from vidsearch.models.text_tokenizer import tokenizer_for
from vidsearch.models.tokenizer import get_tokenizer
from vidsearch.video.clips import ClipSpec, segment
from vidsearch.video.decode import read_clips
from vidsearch.video.preprocess import Preprocess
from vidsearch.video.probing import probe
from vidsearch.video.source import VideoSource

Batch = dict[str, NDArray[np.generic]]

CAPTIONS = (
    "a dog catching a frisbee in a park",
    "a man riding a bicycle down a busy street",
    "two children building a sandcastle on the beach",
    "a chef chopping vegetables in a kitchen",
    "waves crashing against rocks at sunset",
    "a crowd cheering at a football match",
    "someone typing on a laptop keyboard",
    "a cat sleeping on a windowsill",
    "a car driving through snow at night",
    "a woman playing the violin on stage",
    "timelapse of clouds over a mountain range",
    "a person pouring coffee into a white cup",
)
_GENERATED_SIZE = (64, 48)  # width, height
_GENERATED_SECONDS = 4
_GENERATED_FPS = 12
_GENERATED_CLIP_S = 1.0


def random_batch(graph: Graph, batch: int, rng: np.random.Generator) -> Batch:
    """Random inputs: standard-normal floats; token rows of random length [start, ids…, end, 0…]."""
    return {spec.name: _random_tensor(spec, batch, rng) for spec in graph.inputs}


def _random_tensor(spec: TensorSpec, batch: int, rng: np.random.Generator) -> NDArray[np.generic]:
    if spec.dtype.startswith("float"):
        return rng.standard_normal((batch, *spec.shape), dtype=np.float32)
    high = spec.high or 2
    context = spec.shape[-1]
    rows = np.zeros((batch, context), dtype=spec.dtype)
    for row in rows:
        length = int(rng.integers(0, context - 1))
        row[0] = high - 2  # the start token sits just below the end token in CLIP's vocabulary
        row[1 : 1 + length] = rng.integers(1, high - 2, size=length)
        row[1 + length] = high - 1  # the end token: the largest id, where the feature is read
    return rows


def caption_tokens(context_length: int) -> NDArray[np.int64]:
    """The fixed captions as CLIP token ids [len(CAPTIONS), context_length]."""
    return get_tokenizer()(list(CAPTIONS), context_length=context_length).astype(np.int64)


def generated_video() -> bytes:
    """A few seconds of moving colour bars, encoded as H.264 in MP4: decodable like any user file."""
    width, height = _GENERATED_SIZE
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_GENERATED_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, _GENERATED_FPS)
        x = np.arange(width)[None, :, None]
        y = np.arange(height)[:, None, None]
        channel = np.arange(3)[None, None, :]
        for index in range(_GENERATED_SECONDS * _GENERATED_FPS):
            image = ((x * 4 + y * 2 + channel * 80 + index * 9) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decoded_clips(videos: Sequence[VideoSource], spec: Preprocess, count: int,
                  clip_spec: ClipSpec | None = None) -> NDArray[np.float32]:
    """Up to `count` preprocessed clips [N, *spec.output_shape], read from `videos` in order."""
    clips: list[NDArray[np.float32]] = []
    for video in videos:
        info = probe(video)
        windows = segment(info, clip_spec or ClipSpec())
        for _, tensor in read_clips(video, windows[: count - len(clips)], spec):
            clips.append(tensor)
        if len(clips) >= count:
            break
    if not clips:
        raise ConfigError("export: the videos gave no clip to use as input")
    return np.stack(clips)


def real_inputs(graph: Graph, count: int, videos: Sequence[VideoSource] = (),
                model_dir: Path | None = None) -> Batch:
    """`count` real inputs for `graph` (the available ones repeated to fill the count); `model_dir`
    holds the files the graph's tokenizer reads (its export directory)."""
    spec = graph.inputs[0]
    if graph.tokenizer is not None:
        pool: NDArray[np.generic] = tokenizer_for(graph.tokenizer, model_dir or Path())(CAPTIONS)
    elif graph.preprocess is not None:
        if videos:
            pool = decoded_clips(videos, graph.preprocess, count)
        else:
            pool = decoded_clips([generated_video()], graph.preprocess, count,
                                 ClipSpec(length_s=_GENERATED_CLIP_S))
    else:
        raise ConfigError(f"export: no real inputs are known for {graph.name}")
    rows = list(itertools.islice(itertools.cycle(range(len(pool))), count))
    return {spec.name: np.ascontiguousarray(pool[rows])}
