"""Bad input, each case built by the test: a typed error naming the file and the reason, or the
decodable part with the damage counted. Never a hang, never silently wrong frames."""

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import VideoDecodeError, VideoError
from vidsearch.video import ClipSpec, ReadOptions, get_preprocess_preset, probe, read_clips, segment

from .media import (
    VideoFactory,
    VideoSpec,
    damage_packet,
    packet_layout,
    patch_jpeg_size,
    replace_fourcc,
    truncate,
    write_audio_only,
    write_empty_video_track,
)

SPEC = get_preprocess_preset("viclip")
CLIPS = ClipSpec(length_s=1.0)
SKIP = ReadOptions(on_clip_error="skip")


def _read_all(source: Path | bytes, options: ReadOptions | None = None) -> list[tuple[int, np.ndarray]]:
    clips = segment(probe(source), CLIPS)
    return [(clip.index, tensor) for clip, tensor in read_clips(source, clips, SPEC, options)]


def _error(source: Path | bytes) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as excinfo:
        _read_all(source)
    return excinfo.value


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp4"
    error = _error(path)
    assert (error.path, error.reason) == (str(path), "no such file")
    assert isinstance(error, VideoError)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert _error(path).reason == "empty file (0 bytes)"
    assert _error(b"").reason == "empty input (0 bytes)"


def test_random_bytes_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    error = _error(path)
    assert error.path == str(path)
    assert "not a readable video container" in error.reason


def test_truncated_mp4_without_its_index(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=90)  # PyAV writes the index (moov) at the end
    cut = truncate(path, video_factory.path("cut-moov.mp4"), 0.6)
    assert "not a readable video container" in _error(cut).reason


@pytest.mark.parametrize(
    "spec",
    [
        VideoSpec(frames=150, gop=15, container_options={"movflags": "faststart"}),
        VideoSpec(codec="libvpx-vp9", suffix=".webm", frames=150, gop=15),
    ],
    ids=["mp4-faststart", "webm"],
)
def test_truncated_mid_stream_yields_what_is_there(video_factory: VideoFactory, spec: VideoSpec) -> None:
    path = video_factory.make(spec)
    cut = truncate(path, video_factory.path(f"cut-{path.name}"), 0.6)
    info = probe(cut)
    assert 1.0 < info.duration_s < 4.5  # 5 s before the cut
    stream = read_clips(cut, segment(info, CLIPS), SPEC, SKIP)
    got = dict((clip.index, tensor) for clip, tensor in stream)
    pristine = dict(_read_all(path))
    assert len(got) >= 2
    for index, tensor in got.items():
        np.testing.assert_array_equal(tensor, pristine[index])
    assert len(got) + len(stream.stats.failed_clips) == len(segment(info, CLIPS))


def test_audio_only(tmp_path: Path) -> None:
    path = write_audio_only(tmp_path / "talk.m4a")
    assert probe(path).audio_only
    assert _error(path).reason == "audio only, no video stream"
    with pytest.raises(VideoDecodeError, match="audio only"):
        list(read_clips(path, segment(probe(write_audio_only(tmp_path / "b.mp4")), CLIPS), SPEC))


def test_zero_duration(tmp_path: Path) -> None:
    path = write_empty_video_track(tmp_path / "empty-track.mkv")
    info = probe(path)
    assert info.has_video
    assert (info.frame_count, info.duration_s) == (0, 0.0)
    assert "zero duration" in _error(path).reason


def test_unsupported_codec(video_factory: VideoFactory) -> None:
    path = replace_fourcc(video_factory.make(frames=30), video_factory.path("mystery.mp4"), b"avc1", b"zzzz")
    assert "unsupported video codec" in _error(path).reason


def test_broken_packets_in_the_middle_are_skipped_counted_and_never_used(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=150, gop=30, width=320, height=240)  # 5 s, keyframe every second
    layout = packet_layout(path)
    victim = next(i for i in range(70, 90) if not layout[i][3])  # a frame in the third second's GOP
    broken = damage_packet(path, video_factory.path("broken.mp4"), victim)
    clips = segment(probe(broken), CLIPS)
    stream = read_clips(broken, clips, SPEC, SKIP)
    got = dict((clip.index, tensor) for clip, tensor in stream)
    stats = stream.stats
    assert stats.packets_broken >= 1
    assert [index for index, _ in stats.failed_clips] == [2]  # 2-3 s: after the damage, same GOP
    assert "failed to decode" in stats.failed_clips[0][1]
    pristine = dict(_read_all(path))
    assert sorted(got) == [0, 1, 3, 4]
    for index, tensor in got.items():
        np.testing.assert_array_equal(tensor, pristine[index])
    with pytest.raises(VideoDecodeError, match=r"clip 2 \(2.00–3.00 s\): \d+ of 8 sampled frames missing"):
        list(read_clips(broken, clips, SPEC))


def test_huge_resolution_is_refused_before_decoding(video_factory: VideoFactory) -> None:
    path = video_factory.make(width=9216, height=9216, frames=1, options={"preset": "ultrafast"})
    assert probe(path).width == 9216
    error = _error(path)
    assert "declared frame size 9216×9216 exceeds the limit" in error.reason


def test_huge_resolution_inside_the_bitstream(video_factory: VideoFactory) -> None:
    small = video_factory.make(codec="mjpeg", suffix=".mkv", pix_fmt="yuvj420p", frames=30)
    path = patch_jpeg_size(small, video_factory.path("huge-jpeg.mkv"), 12000, 12000)
    error = _error(path)
    assert "8 of 8 sampled frames missing" in error.reason
    assert "failed to decode" in error.reason


class _StallingFile(io.RawIOBase):
    """A source that delivers data slower and slower, like a network stream about to hang."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        time.sleep(0.2)
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()


def test_a_stalling_input_hits_the_time_limit(video_factory: VideoFactory) -> None:
    data = video_factory.make(frames=300, width=320, height=240).read_bytes()
    clips = segment(probe(data), CLIPS)
    started = time.monotonic()
    with pytest.raises(VideoDecodeError, match="time limit of 1 s exceeded"):
        list(read_clips(_StallingFile(data), clips, SPEC, ReadOptions(time_limit_s=1.0)))
    assert time.monotonic() - started < 3


def test_slow_decoding_hits_the_time_limit(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=90, width=640, height=360, gop=90, noise=True)  # ~2 s to decode
    clips = segment(probe(path), ClipSpec(length_s=3.0))
    started = time.monotonic()
    with pytest.raises(VideoDecodeError, match="time limit"):
        list(read_clips(path, clips, SPEC, ReadOptions(time_limit_s=0.2, time_limit_per_video_s=0.0)))
    assert time.monotonic() - started < 1.5


def test_the_error_survives_pickling_with_path_and_reason(tmp_path: Path) -> None:
    import pickle

    error = _error(tmp_path / "gone.webm")
    copy = pickle.loads(pickle.dumps(error))  # as worker processes hand errors back
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    errors: list[VideoDecodeError] = []

    def read() -> None:
        with pytest.raises(VideoDecodeError) as excinfo:
            probe(fifo)
        errors.append(excinfo.value)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # it hangs in open(): unblock it with a writer, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO blocked")
    (error,) = errors
    assert (error.path, error.reason) == (str(fifo), "is a FIFO (named pipe), not a regular video file")
    with pytest.raises(VideoDecodeError, match="is a directory, not a regular video file"):
        probe(tmp_path)
    with pytest.raises(VideoDecodeError, match="is a character device"):
        probe("/dev/zero")


def test_a_cut_off_file_reads_shorter_than_its_headers_claim(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=150, gop=15, audio=True, container_options={"movflags": "faststart"})
    whole = probe(path)
    assert whole.declared_duration_s == pytest.approx(5.0, abs=0.05)
    assert whole.missing_s == 0.0
    cut = probe(truncate(path, video_factory.path("cut-late.mp4"), 0.6))
    assert cut.declared_duration_s == whole.declared_duration_s  # the index still promises all of it
    assert cut.missing_s == pytest.approx(whole.duration_s - cut.duration_s)
    assert cut.missing_s > 1.0
