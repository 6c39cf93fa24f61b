"""probe() on real files: counts from the packets, VFR, rotation, audio, in-memory input."""

import io
from pathlib import Path

import pytest

from vidsearch.video import probe

from .media import VideoFactory, write_audio_only

# Irregular frame intervals in milliseconds: 33 ms apart with a 7 ms wobble.
VFR_PTS = tuple(i * 33 + (i % 5) * 7 for i in range(60))


def test_h264_mp4(video_factory: VideoFactory) -> None:
    info = probe(video_factory.make(frames=75, fps=25, width=160, height=120))
    assert (info.codec, info.width, info.height, info.rotation) == ("h264", 160, 120, 0)
    assert info.frame_count == 75
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(3.0)
    assert not info.variable_frame_rate
    assert (info.has_video, info.has_audio, info.audio_only) == (True, False, False)


def test_webm_frames_are_counted_though_the_container_does_not_say(video_factory: VideoFactory) -> None:
    path = video_factory.make(codec="libvpx-vp9", suffix=".webm", frames=45)
    import av

    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # WebM states no count
    info = probe(path)
    assert (info.codec, info.frame_count) == ("vp9", 45)
    assert info.duration_s == pytest.approx(1.5)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_is_detected(video_factory: VideoFactory, suffix: str) -> None:
    info = probe(video_factory.make(suffix=suffix, pts=VFR_PTS, time_base=(1, 1000)))
    assert info.variable_frame_rate
    assert info.frame_count == 60
    assert info.duration_s == pytest.approx((VFR_PTS[-1] + 33) / 1000, abs=0.01)


def test_rotation_from_the_display_matrix(video_factory: VideoFactory) -> None:
    info = probe(video_factory.make(rotation=90, width=160, height=96))
    assert info.rotation == 90
    assert (info.width, info.height) == (160, 96)
    assert info.display_size == (96, 160)


def test_video_with_audio(video_factory: VideoFactory) -> None:
    info = probe(video_factory.make(audio=True))
    assert (info.has_video, info.has_audio, info.audio_only) == (True, True, False)


def test_audio_only_is_described_not_refused(tmp_path: Path) -> None:
    info = probe(write_audio_only(tmp_path / "speech.m4a", seconds=2.0))
    assert info.audio_only
    assert (info.frame_count, info.codec) == (0, "")
    assert info.duration_s == pytest.approx(2.0, abs=0.1)


def test_bytes_and_file_objects_probe_like_the_path(video_factory: VideoFactory) -> None:
    path = video_factory.make(codec="libvpx-vp9", suffix=".webm", frames=30)
    expected = probe(path)
    from_bytes = probe(path.read_bytes())
    with open(path, "rb") as handle:
        handle.read(100)  # a file object anywhere: probing starts from the beginning
        from_file = probe(handle)
    from_buffer = probe(io.BytesIO(path.read_bytes()))
    assert from_bytes.source == "<bytes>"
    for info in (from_bytes, from_file, from_buffer):
        assert info.frame_count == expected.frame_count
        assert info.duration_s == expected.duration_s
        assert info.codec == expected.codec
