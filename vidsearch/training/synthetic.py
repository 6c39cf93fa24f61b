"""Moving-shapes videos with captions: a video–text data set that trains in minutes on a CPU.

Every video shows one coloured shape (the subject) doing one motion over a textured, low-saturation
background with a few grey distractor shapes. Captions name the subject's colour, shape and motion
("a red circle moves to the left"). The design answers three needs:

- Motion needs time. Directional scenes are rendered once and written twice, forwards and
  backwards: the backwards video shows the opposite motion with exactly the same frames, so no single
  frame tells left from right, up from down, or growing from shrinking. Frames are rendered at the
  middle of their display interval, and with the default 20 frames at 10 fps the 8 segment-middle
  samples of a clip fall 1.25 + 2.5·i frame intervals in, never on a boundary, so a reversed clip
  samples exactly the same frames in reverse order.
- Generalisation is measured. A colour–shape–motion combination is held out for the test split when
  (colour + shape + motion axis) % 4 == 0: every (colour, shape) pair loses one motion axis, while
  every colour, shape and motion, and every pair of them, still occurs in training. Holding out by
  axis keeps twins (opposite motions) in the same split.
- Colour is unambiguous: distractors are grey, backgrounds are desaturated, the subject is saturated.

Videos are real H.264 MP4 files (PyAV, libx264, one encoder thread so the bytes are deterministic).
Each scene draws from its own random stream (seed, split, scene number), so output does not depend
on generation order.
"""

import contextlib
import functools
import json
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError
from vidsearch.video.manifest import ManifestRow, write_manifest

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (235, 220, 35),
    "green": (35, 185, 60),
    "blue": (35, 85, 235),
    "purple": (155, 55, 210),
}
SHAPES = ("circle", "square", "triangle", "cross")
MOTIONS = ("left", "right", "up", "down", "still", "growing", "shrinking")
OPPOSITE = {
    "left": "right",
    "right": "left",
    "up": "down",
    "down": "up",
    "growing": "shrinking",
    "shrinking": "growing",
    "still": "still",
}
AXES = (("left", "right"), ("up", "down"), ("growing", "shrinking"), ("still",))
AXIS_OF = {motion: index for index, axis in enumerate(AXES) for motion in axis}

# The canonical phrase (first) is what test captions use; training draws among all of them.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moves to the left", "moving left", "goes left", "slides to the left"),
    "right": ("moves to the right", "moving right", "goes right", "slides to the right"),
    "up": ("moves up", "moving up", "goes up", "rises"),
    "down": ("moves down", "moving down", "goes down", "sinks"),
    "still": ("stays still", "does not move", "standing still", "is not moving"),
    "growing": ("grows", "is growing", "gets bigger", "getting larger"),
    "shrinking": ("shrinks", "is shrinking", "gets smaller", "getting smaller"),
}
SUBJECT_FORMS = ("{article} {colour} {shape}", "the {colour} {shape}", "{colour} {shape}")

SPLITS = ("train", "test")
_BATCH = 64  # videos per task when encoding in worker processes


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. `n` videos in all, `test_fraction` of them on held-out combinations."""

    n: int
    seed: int = 0
    test_fraction: float = 0.1
    size: int = 128
    frames: int = 20
    fps: int = 10
    max_distractors: int = 2
    crf: int = 20
    paraphrase_train: bool = True

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ConfigError(f"synthetic data: n must be at least 2, got {self.n}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"synthetic data: test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.size < 32 or self.size % 2:
            raise ConfigError(f"synthetic data: size must be even and at least 32, got {self.size}")
        if self.frames < 2 or self.fps < 1:
            raise ConfigError(f"synthetic data: need frames ≥ 2 and fps ≥ 1, got {self.frames}, {self.fps}")

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def test_count(self) -> int:
        return max(1, round(self.n * self.test_fraction))


@dataclass(frozen=True)
class Combo:
    colour: str
    shape: str
    motion: str

    def caption(self, rng: np.random.Generator | None = None) -> str:
        """The canonical caption, or (with `rng`) a random paraphrase of it."""
        if rng is None:
            subject, phrase = SUBJECT_FORMS[0], MOTION_PHRASES[self.motion][0]
        else:
            subject = SUBJECT_FORMS[int(rng.integers(len(SUBJECT_FORMS)))]
            phrases = MOTION_PHRASES[self.motion]
            phrase = phrases[int(rng.integers(len(phrases)))]
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{subject.format(article=article, colour=self.colour, shape=self.shape)} {phrase}"


def is_held_out(colour: str, shape: str, motion: str) -> bool:
    """Whether a combination belongs to the test split (see the module docstring)."""
    return (list(COLOURS).index(colour) + SHAPES.index(shape) + AXIS_OF[motion]) % 4 == 0


def split_of(combo: Combo) -> str:
    return "test" if is_held_out(combo.colour, combo.shape, combo.motion) else "train"


def caption_for(colour: str, shape: str, motion: str) -> str:
    """The canonical caption of a combination: what queries and test captions say."""
    return Combo(colour, shape, motion).caption()


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: tuple[float, float, float]
    x: float
    y: float
    r: float


def _sdf(kind: str, dx: NDArray[np.float32], dy: NDArray[np.float32], r: float) -> NDArray[np.float32]:
    """Signed distance (pixels, negative inside) of a shape of radius `r` centred at the origin;
    sizes are chosen so the four shapes cover similar areas."""
    if kind == "circle":
        distance = np.hypot(dx, dy) - r
    elif kind == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - 0.88 * r
    elif kind == "triangle":  # pointing up; inradius h
        h = 0.62 * r
        distance = np.maximum.reduce([dy - h, -0.866 * dx - 0.5 * dy - h, 0.866 * dx - 0.5 * dy - h])
    else:  # cross: two bars
        arm, half = 1.05 * r, 0.36 * r
        horizontal = np.maximum(np.abs(dx) - arm, np.abs(dy) - half)
        distance = np.minimum(horizontal, np.maximum(np.abs(dx) - half, np.abs(dy) - arm))
    return np.asarray(distance, dtype=np.float32)


def _paint(canvas: NDArray[np.float32], shape: Shape, grid: tuple[NDArray[np.float32], ...]) -> None:
    xs, ys = grid
    alpha = np.clip(0.5 - _sdf(shape.kind, xs - shape.x, ys - shape.y, shape.r), 0.0, 1.0)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * np.asarray(shape.colour, dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> NDArray[np.float32]:
    """A desaturated two-tone gradient at a random angle with a fixed grain."""
    grey = rng.uniform(30, 150, size=2)
    tint = rng.uniform(-12, 12, size=(2, 3))
    ends = grey[:, None] + tint
    angle = rng.uniform(0, 2 * math.pi)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    ramp = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None] + 0.5
    image = ends[0] + np.clip(ramp, 0, 1)[..., None] * (ends[1] - ends[0])
    return (image + rng.normal(0, 5, size=(size, size, 1))).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    """One rendered motion: a background with distractors, and the subject's path over time."""

    background: NDArray[np.float32]
    kind: str
    colour: tuple[float, float, float]
    start: tuple[float, float, float]  # x, y, radius at t = 0
    end: tuple[float, float, float]  # at the end of the clip


def _subject_path(
    rng: np.random.Generator, motion: str, size: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Start and end (x, y, radius) of a subject doing `motion` inside a `size`² frame."""
    if motion in ("growing", "shrinking"):
        small = rng.uniform(0.08, 0.11) * size
        large = small * rng.uniform(1.7, 2.1)
        margin = large * 1.1
        x, y = rng.uniform(margin, size - margin, size=2)
        r0, r1 = (small, large) if motion == "growing" else (large, small)
        return (x, y, r0), (x, y, r1)
    r = rng.uniform(0.11, 0.16) * size
    margin = r * 1.15
    if motion == "still":
        x, y = rng.uniform(margin, size - margin, size=2)
        return (x, y, r), (x, y, r)
    travel = min(rng.uniform(0.45, 0.7) * size, size - 2 * margin)
    along = rng.uniform(margin, max(margin, size - margin - travel))
    across = rng.uniform(margin, size - margin)
    sign = 1.0 if motion in ("right", "down") else -1.0
    a0 = along if sign > 0 else along + travel
    a1 = a0 + sign * travel
    if motion in ("left", "right"):
        return (a0, across, r), (a1, across, r)
    return (across, a0, r), (across, a1, r)


def make_scene(rng: np.random.Generator, combo: Combo, spec: SynthSpec) -> Scene:
    size = spec.size
    background = _background(rng, size)
    grid = _grid(size)
    for _ in range(int(rng.integers(spec.max_distractors + 1))):
        grey = float(rng.uniform(70, 210))
        x, y = (float(v) for v in rng.uniform(0.1 * size, 0.9 * size, size=2))
        radius = float(rng.uniform(0.05, 0.09) * size)
        distractor = Shape(SHAPES[int(rng.integers(len(SHAPES)))], (grey, grey, grey), x, y, radius)
        _paint(background, distractor, grid)
    jitter = rng.uniform(-12, 12, size=3)
    colour = tuple(float(c) for c in np.clip(np.asarray(COLOURS[combo.colour]) + jitter, 0, 255))
    start, end = _subject_path(rng, combo.motion, size)
    return Scene(
        background,
        combo.shape,
        (colour[0], colour[1], colour[2]),
        (start[0], start[1], start[2]),
        (end[0], end[1], end[2]),
    )


def _grid(size: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[None, :].repeat(size, 0), coords[:, None].repeat(size, 1)


def render(scene: Scene, spec: SynthSpec) -> NDArray[np.uint8]:
    """Frames [frames, size, size, 3] uint8; frame k shows the scene at the middle of its interval."""
    grid = _grid(spec.size)
    out = np.empty((spec.frames, spec.size, spec.size, 3), dtype=np.uint8)
    for k in range(spec.frames):
        progress = (k + 0.5) / spec.frames
        x, y, r = (a + progress * (b - a) for a, b in zip(scene.start, scene.end, strict=True))
        canvas = scene.background.copy()
        _paint(canvas, Shape(scene.kind, scene.colour, x, y, r), grid)
        out[k] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return out


def _yuv_frame(image: NDArray[np.uint8]) -> av.VideoFrame:
    """An RGB image as a BT.601 limited-range yuv420p frame (chroma averaged over 2×2), converted
    here with its row padding zeroed, so that no byte x264 sees depends on FFmpeg's scaler or on
    uninitialised memory (PyAV's own RGB conversion gave different files from run to run)."""
    rgb = image.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    height, width = r.shape
    luma = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, values in zip(frame.planes, (luma, cb, cr), strict=True):
        if values.shape != (plane.height, plane.width):  # chroma: the mean of each 2×2 block
            values = values.reshape(plane.height, 2, plane.width, 2).mean(axis=(1, 3))
        padded = np.zeros((plane.height, plane.line_size), dtype=np.uint8)
        padded[:, : plane.width] = np.clip(np.rint(values), 0, 255)
        plane.update(padded.tobytes())
    return frame


def write_mp4(path: Path, frames: NDArray[np.uint8], fps: int, crf: int) -> None:
    """Encode RGB frames as H.264 (yuv420p) in MP4 with one encoder thread (deterministic bytes)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        # One thread, and no macroblock-tree rate control: with it x264 gave different bytes for the
        # same frames from process to process (it reads memory it has not written, for small frames).
        stream.codec_context.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        for image in frames:
            container.mux(stream.encode(_yuv_frame(image)))
        container.mux(stream.encode(None))


# --- the data set ------------------------------------------------------------------------------


def combos(split: str) -> list[Combo]:
    """Every combination of a split, in a fixed order."""
    return [
        Combo(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS if split_of(Combo(c, s, m)) == split
    ]


def _units(split: str) -> list[tuple[str, str, int]]:
    """(colour, shape, axis) of a split: a unit yields twins (one video of each direction), or one
    video for the still axis, so that every combination is equally frequent."""
    return sorted({(c.colour, c.shape, AXIS_OF[c.motion]) for c in combos(split)})


@dataclass(frozen=True)
class Planned:
    """One video to write: its scene's random stream, combination, and whether it plays reversed."""

    split: str
    scene: int
    combo: Combo
    reversed: bool


def plan(spec: SynthSpec) -> list[Planned]:
    """Every video of the data set in order: per split, its units in shuffled rounds."""
    out: list[Planned] = []
    for split, count in (("train", spec.n - spec.test_count), ("test", spec.test_count)):
        rng = np.random.default_rng([spec.seed, SPLITS.index(split), 0])
        units = _units(split)
        videos: list[Planned] = []
        scene = 0
        while len(videos) < count:
            for index in rng.permutation(len(units)):
                colour, shape, axis = units[int(index)]
                motions = AXES[axis]
                first = motions[int(rng.integers(len(motions)))]
                videos.append(Planned(split, scene, Combo(colour, shape, first), False))
                if len(motions) == 2:
                    videos.append(Planned(split, scene, Combo(colour, shape, OPPOSITE[first]), True))
                scene += 1
        out.extend(videos[:count])
    return out


@functools.lru_cache(maxsize=2)
def _forward_frames(spec: SynthSpec, split: str, scene: int, combo: Combo) -> NDArray[np.uint8]:
    """The frames of one scene played forwards (cached: twins are written one after the other)."""
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), 1, scene])
    frames = render(make_scene(rng, combo, spec), spec)
    frames.flags.writeable = False
    return frames


def scene_frames(spec: SynthSpec, item: Planned) -> NDArray[np.uint8]:
    """The frames of a planned video; a reversed twin is its forward scene played backwards."""
    motion = OPPOSITE[item.combo.motion] if item.reversed else item.combo.motion
    frames = _forward_frames(spec, item.split, item.scene, Combo(item.combo.colour, item.combo.shape, motion))
    return frames[::-1] if item.reversed else frames


def _row(spec: SynthSpec, number: int, item: Planned) -> ManifestRow:
    caption_rng = np.random.default_rng([spec.seed, SPLITS.index(item.split), 2, number])
    paraphrase = spec.paraphrase_train and item.split == "train"
    colour, shape, motion = item.combo.colour, item.combo.shape, item.combo.motion
    return ManifestRow(
        video=f"videos/{item.split}-{number:06d}.mp4",
        start_s=0.0,
        end_s=spec.duration_s,
        caption=item.combo.caption(caption_rng if paraphrase else None),
        label=caption_for(colour, shape, motion),
        extra={
            "colour": colour,
            "shape": shape,
            "motion": motion,
            "scene": f"{item.split}-{item.scene}",
            "reversed": str(item.reversed).lower(),
        },
    )


def _write_videos(out: Path, spec: SynthSpec, batch: list[tuple[int, Planned]]) -> int:
    """Render and encode a run of planned videos (a worker's share); returns how many."""
    for number, item in batch:
        path = out / f"videos/{item.split}-{number:06d}.mp4"
        write_mp4(path, np.ascontiguousarray(scene_frames(spec, item)), spec.fps, spec.crf)
    return len(batch)


def generate(
    out: Path, spec: SynthSpec, progress: Callable[[int, int], None] | None = None, workers: int = 0
) -> dict[str, Path]:
    """Write `spec.n` videos under `out/videos/`, `train.jsonl`, `test.jsonl` and `synth.json`,
    encoding in `workers` processes (0: in this one). Returns the manifest path of each split.
    """
    (out / "videos").mkdir(parents=True, exist_ok=True)
    planned = list(enumerate(plan(spec)))
    batches = [planned[i : i + _BATCH] for i in range(0, len(planned), _BATCH)]
    done = 0
    with contextlib.ExitStack() as stack:
        if workers > 0:
            pool = stack.enter_context(
                ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            )
            counts: Iterable[int] = (
                f.result() for f in [pool.submit(_write_videos, out, spec, b) for b in batches]
            )
        else:
            counts = (_write_videos(out, spec, batch) for batch in batches)
        for count in counts:
            done += count
            if progress is not None:
                progress(done, len(planned))
    rows = {split: [_row(spec, n, item) for n, item in planned if item.split == split] for split in SPLITS}
    paths = {split: out / f"{split}.jsonl" for split in SPLITS}
    for split, path in paths.items():
        write_manifest(path, rows[split])
    meta = {
        "spec": asdict(spec),
        "colours": list(COLOURS),
        "shapes": list(SHAPES),
        "motions": list(MOTIONS),
        "held_out": [caption_for(c.colour, c.shape, c.motion) for c in combos("test")],
        "counts": {split: len(rows[split]) for split in SPLITS},
    }
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %d synthetic videos to %s (%s)", len(planned), out, meta["counts"])
    return paths
