"""Real test media, encoded with PyAV (no ffmpeg CLI), plus byte surgery for damaged files.

Frames carry their own number as a 4×4 grid of black/white cells in the centre square, which
survives compression, resizing and centre crops, so a test can read back which frame a decoder
returned (`read_code`). `VideoFactory` caches files per test session by their parameters.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4  # cells per side of the frame-number code: 16 bits
LOW, HIGH = 16, 235


def code_frame(number: int, width: int, height: int, background: tuple[int, int, int] = (90, 60, 150)
               ) -> np.ndarray:
    """An RGB frame whose centre square shows `number` in binary, one bit per cell, row-major."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = background
    side = min(width, height) * 3 // 4
    top, left = (height - side) // 2, (width - side) // 2
    cell = side // GRID
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        value = HIGH if number >> bit & 1 else LOW
        y, x = top + row * cell, left + col * cell
        frame[y : y + cell, x : x + cell] = value
    return frame


def read_code(frame: np.ndarray) -> int:
    """The number `code_frame` wrote, read back from an RGB frame [H, W, 3] of any size."""
    height, width = frame.shape[:2]
    side = min(width, height) * 3 / 4
    top, left = (height - side) / 2, (width - side) / 2
    cell = side / GRID
    number = 0
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        y, x = int(top + (row + 0.5) * cell), int(left + (col + 0.5) * cell)
        patch = frame[y - 1 : y + 2, x - 1 : x + 2].astype(np.float32).mean()
        number |= int(patch > (LOW + HIGH) / 2) << bit
    return number


def unnormalise(clip: np.ndarray, layout: str, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """A preprocessed clip tensor back to uint8 frames [T, H, W, 3] (RGB)."""
    frames = clip.transpose(0, 2, 3, 1) if layout == "TCHW" else clip.transpose(1, 2, 3, 0)
    pixels = (frames * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)) * 255
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class VideoSpec:
    """What a test video is made of. `pts` (in units of `time_base`) makes variable frame rate;
    `shots` are frame numbers where the picture changes completely (for shot detection)."""

    suffix: str = ".mp4"
    codec: str = "libx264"
    width: int = 160
    height: int = 120
    fps: int = 30
    frames: int = 60
    pix_fmt: str = "yuv420p"
    gop: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    pts: tuple[int, ...] | None = None
    time_base: tuple[int, int] | None = None
    rotation: int = 0
    audio: bool = False
    shots: tuple[int, ...] = ()
    noise: bool = False  # fresh random texture around the code in every frame: costly to decode

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


_DEFAULT_OPTIONS = {
    "libx264": {"preset": "superfast", "crf": "18"},  # superfast keeps B-frames (reordering)
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "1M"},
}

# Neighbours differ in hue, saturation and brightness, well past the content detector's threshold.
_SHOT_COLOURS = [
    (20, 20, 90), (240, 230, 40), (128, 128, 128), (200, 40, 40), (40, 200, 200), (250, 250, 250)
]


def _picture(spec: VideoSpec, number: int) -> np.ndarray:
    if spec.noise:
        frame = code_frame(number, spec.width, spec.height)
        texture = np.random.default_rng(number).integers(0, 256, frame.shape, dtype=np.uint8)
        border = frame == np.asarray((90, 60, 150), dtype=np.uint8)
        return np.where(border, texture, frame)
    if not spec.shots:
        return code_frame(number, spec.width, spec.height)
    shot = sum(number >= s for s in spec.shots)
    frame = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    frame[:] = _SHOT_COLOURS[shot % len(_SHOT_COLOURS)]
    stripe = (number * 2) % spec.width  # a little motion inside each shot
    frame[:, stripe : stripe + 4] = 128
    return frame


def _add_audio(container: av.container.OutputContainer, seconds: float) -> None:
    stream = container.add_stream("aac", rate=16000)
    samples = int(seconds * 16000)
    tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = np.zeros((1, 1024), dtype=np.float32)
        piece = tone[start : start + 1024]
        chunk[0, : piece.size] = piece
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(path: Path, spec: VideoSpec) -> Path:
    """Encode the video `spec` describes to `path`."""
    with av.open(str(path), "w", options=spec.container_options) as container:
        stream = container.add_stream(spec.codec, rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
        stream.options = {**_DEFAULT_OPTIONS.get(spec.codec, {}), **spec.options}
        if spec.gop:
            stream.codec_context.gop_size = spec.gop
        if spec.time_base:
            stream.codec_context.time_base = Fraction(*spec.time_base)
            stream.time_base = Fraction(*spec.time_base)
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        if spec.audio:
            _add_audio(container, spec.frames / spec.fps)
        for number in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(_picture(spec, number), format="rgb24")
            frame.pts = spec.pts[number] if spec.pts else number
            if spec.time_base:
                frame.time_base = Fraction(*spec.time_base)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 2.0) -> Path:
    with av.open(str(path), "w") as container:
        _add_audio(container, seconds)
    return path


def write_empty_video_track(path: Path) -> Path:
    """A Matroska file whose video stream has no frames at all (an audio track keeps the file valid)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        _add_audio(container, 1.0)
    return path


def packet_layout(path: Path) -> list[tuple[int, int, int, bool]]:
    """(byte position, size, pts, keyframe) of every video packet, in decode order."""
    with av.open(str(path)) as container:
        return [
            (int(p.pos), int(p.size), int(p.pts), bool(p.is_keyframe))
            for p in container.demux(video=0)
            if p.size
        ]


def damage_packet(path: Path, out: Path, number: int, seed: int = 0) -> Path:
    """Copy `path` to `out` with the payload of video packet `number` (decode order) overwritten with
    random bytes; its first 8 bytes (length prefix and NAL header) are kept, so it still parses."""
    data = bytearray(path.read_bytes())
    pos, size, _, _ = packet_layout(path)[number]
    noise = np.random.default_rng(seed).integers(0, 256, size - 8, dtype=np.uint8)
    data[pos + 8 : pos + size] = noise.tobytes()
    out.write_bytes(bytes(data))
    return out


def truncate(path: Path, out: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def replace_fourcc(path: Path, out: Path, old: bytes, new: bytes) -> Path:
    """Rename a codec in an MP4 sample description (byte surgery: same length, nothing else moves)."""
    data = bytearray(path.read_bytes())
    stsd = data.find(b"stsd")
    entry = data.find(old, stsd)
    assert stsd > 0, "not an MP4 file"
    assert entry > 0, "no such sample entry"
    data[entry : entry + 4] = new
    out.write_bytes(bytes(data))
    return out


def patch_jpeg_size(path: Path, out: Path, width: int, height: int) -> Path:
    """Make every JPEG frame declare `width`×`height` in its SOF0 header (the data stays small)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"\xff\xc0")
    count = 0
    while pos >= 0:
        data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
        count += 1
        pos = data.find(b"\xff\xc0", pos + 2)
    assert count, "no JPEG frame header found"
    out.write_bytes(bytes(data))
    return out


class VideoFactory:
    """Makes test videos on demand, once per session per distinct spec."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        """A fresh path in the factory's folder, for files a test derives by hand."""
        return self.folder / name

    def make(self, spec: VideoSpec | None = None, **changes: object) -> Path:
        spec = spec or VideoSpec(**changes)  # type: ignore[arg-type]
        path = self.folder / f"{spec.key()}{spec.suffix}"
        if not path.exists():
            partial = path.with_name(f"partial-{path.name}")
            write_video(partial, spec)
            partial.rename(path)
        return path


def write_long_video(path: Path, seconds: int, width: int = 1920, height: int = 1080, fps: int = 30,
                     gop_s: int = 1) -> Path:
    """A long, low-bitrate H.264 MP4 made in about a second: one group of pictures of a still frame is
    encoded once, then its packets are written again and again with shifted timestamps."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        stream.codec_context.gop_size = gop_s * fps
        picture = av.VideoFrame.from_ndarray(code_frame(0, width, height), format="rgb24")
        for number in range(gop_s * fps):
            picture.pts = number
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as source, av.open(str(path), "w") as out:
        template = source.streams.video[0]
        time_base = template.time_base
        packets = [
            (bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in source.demux(template) if p.size
        ]
        stream = out.add_stream_from_template(template)
        span = round(gop_s / time_base)
        for repeat in range(seconds // gop_s):
            for data, pts, dts, keyframe, duration in packets:
                packet = av.Packet(data)
                packet.pts, packet.dts = pts + repeat * span, dts + repeat * span
                packet.is_keyframe, packet.duration = keyframe, duration
                packet.time_base, packet.stream = time_base, stream
                out.mux(packet)
    return path
