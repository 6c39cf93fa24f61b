"""read_frames / read_clips against a plain decode of every frame: right frames, same pixels."""

import io
from pathlib import Path

import av
import numpy as np
import pytest

from vidsearch.errors import VideoDecodeError
from vidsearch.video import (
    Clip,
    ClipSpec,
    ReadOptions,
    SamplingRule,
    get_preprocess_preset,
    probe,
    probe_timeline,
    read_clips,
    read_frames,
    sample_timestamps,
    segment,
)
from vidsearch.video.dali import clip_frame_numbers
from vidsearch.video.decode import read_clips_at
from vidsearch.video.transform import frame_to_rgb, normalise_clip, prepare_frame

from .media import VideoFactory, VideoSpec, packet_layout, read_code, unnormalise

VFR_PTS = tuple(i * 33 + (i % 5) * 7 for i in range(90))

FILES = {
    "h264-bframes": VideoSpec(frames=120, gop=15),
    "h264-open-gop": VideoSpec(frames=120, options={"x264-params": "open-gop=1:keyint=24:min-keyint=24"}),
    "vp9": VideoSpec(codec="libvpx-vp9", suffix=".webm", frames=120, gop=20),
    "vfr-mkv": VideoSpec(suffix=".mkv", frames=90, pts=VFR_PTS, time_base=(1, 1000), gop=12),
    "mjpeg": VideoSpec(codec="mjpeg", suffix=".mkv", pix_fmt="yuvj420p", frames=60),
}
RULES = {
    "viclip": SamplingRule(8),
    "videomae": SamplingRule(16, "centre_stride", stride_frames=2),
}


def full_decode(path: Path) -> tuple[list[float], list[np.ndarray]]:
    """Every frame, decoded plainly in one go, with its time from the first frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sorted(((f.pts, frame_to_rgb(f)) for f in container.decode(stream)), key=lambda x: x[0])
        time_base = float(stream.time_base)
    start = frames[0][0]
    return [(pts - start) * time_base for pts, _ in frames], [image for _, image in frames]


def expected_frame(times: list[float], stamp: float) -> int:
    """The frame whose presentation interval contains `stamp` (first/last frame outside the video)."""
    shown = [i for i, t in enumerate(times) if t <= stamp]
    return shown[-1] if shown else 0


@pytest.mark.parametrize("rule_name", sorted(RULES))
@pytest.mark.parametrize("file_name", sorted(FILES))
def test_frames_are_the_ones_the_rule_names_with_identical_pixels(
    video_factory: VideoFactory, file_name: str, rule_name: str
) -> None:
    path = video_factory.make(FILES[file_name])
    info = probe(path)
    clips = segment(info, ClipSpec(length_s=0.9, min_tail_s=0.1))
    times, images = full_decode(path)
    stream = read_frames(path, clips, RULES[rule_name])
    got = list(stream)
    assert [c.clip for c in got] == clips
    for item in got:
        stamps = sample_timestamps(item.clip, RULES[rule_name], info.fps)
        wanted = [expected_frame(times, t) for t in stamps]
        assert [read_code(f) for f in item.frames] == wanted
        assert item.frame_times_s == pytest.approx([times[i] for i in wanted])
        for index, frame in zip(wanted, item.frames, strict=True):
            np.testing.assert_array_equal(frame, images[index])
    assert stream.stats.clips_read == len(clips)
    assert stream.stats.packets_broken == stream.stats.frames_corrupt == 0


def test_sparse_sampling_decodes_only_the_groups_of_pictures_it_needs(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=300, gop=15)  # 10 s, a keyframe every 0.5 s
    clips = segment(probe(path), ClipSpec(length_s=5.0))
    stream = read_frames(path, clips, SamplingRule(4, "centre_stride", stride_frames=2))
    got = list(stream)
    assert len(got) == 2
    stats = stream.stats
    assert stats.gops == 20
    assert stats.gops_decoded <= 4  # two clips, a few frames around each centre
    assert stats.packets_decoded < stats.packets / 4
    assert stats.frames_converted == 8
    assert [read_code(f) for f in got[0].frames] == [72, 74, 76, 78]  # centre 2.5 s = frame 75


def test_open_gops_decode_their_leading_frames_from_the_previous_group(video_factory: VideoFactory) -> None:
    path = video_factory.make(FILES["h264-open-gop"])
    layout = packet_layout(path)
    keys = [i for i, (*_, key) in enumerate(layout) if key]
    leading = [k for k in keys[1:] if layout[k + 1][2] < layout[k][2]]
    assert leading, "the encoder made no open GOP; the test would prove nothing"
    # Ask for exactly a leading frame of a later GOP: shown before its keyframe, predicted from before.
    key = leading[-1]
    times, images = full_decode(path)
    with av.open(str(path)) as container:
        time_base = float(container.streams.video[0].time_base)
    leading_time = (layout[key + 1][2] - min(p for _, _, p, _ in layout)) * time_base
    clip = Clip(0, leading_time, leading_time + 0.001)
    stream = read_frames(path, [clip], SamplingRule(1))
    (item,) = list(stream)
    wanted = expected_frame(times, clip.centre_s)
    assert read_code(item.frames[0]) == wanted
    np.testing.assert_array_equal(item.frames[0], images[wanted])
    assert stream.stats.gops_decoded == 2


# ViCLIP squashes the frame to a square, so its source is square for the code to be read back;
# VideoMAE's centre crop keeps the centre square of a wide frame.
@pytest.mark.parametrize(("preset", "width", "height"), [("viclip", 240, 240), ("videomae_v2", 320, 180)])
def test_read_clips_gives_normalised_tensors_of_the_spec(
    video_factory: VideoFactory, preset: str, width: int, height: int
) -> None:
    spec = get_preprocess_preset(preset)
    path = video_factory.make(width=width, height=height, frames=90, gop=30)
    clips = segment(probe(path), ClipSpec(length_s=1.5))
    times, images = full_decode(path)
    out = list(read_clips(path, clips, spec))
    assert len(out) == 2
    for clip, tensor in out:
        assert tensor.shape == spec.output_shape
        assert tensor.dtype == np.float32
        assert tensor.flags.c_contiguous
        stamps = sample_timestamps(clip, spec.sampling, 30.0)
        wanted = [expected_frame(times, t) for t in stamps]
        expected = normalise_clip([prepare_frame(images[i], spec) for i in wanted], spec)
        np.testing.assert_array_equal(tensor, expected)
        frames = unnormalise(tensor, spec.layout, spec.mean, spec.std)
        assert [read_code(f) for f in frames] == wanted


def test_rotated_video_is_turned_as_a_player_shows_it(video_factory: VideoFactory) -> None:
    path = video_factory.make(rotation=90, width=160, height=96, frames=30)
    (item,) = list(read_frames(path, [Clip(0, 0.0, 1.0)], SamplingRule(2)))
    for frame, number in zip(item.frames, (7, 22), strict=True):
        assert frame.shape == (160, 96, 3)  # counter-clockwise by 90°: width and height swap
        assert read_code(np.rot90(frame, -1)) == number


def test_bytes_and_file_objects_read_like_the_path(video_factory: VideoFactory) -> None:
    path = video_factory.make(codec="libvpx-vp9", suffix=".webm", frames=60, gop=10)
    spec = get_preprocess_preset("viclip")
    clips = segment(probe(path), ClipSpec(length_s=1.0))
    expected = list(read_clips(path, clips, spec))
    with open(path, "rb") as handle:
        for source in (path.read_bytes(), io.BytesIO(path.read_bytes()), handle, str(path)):
            got = list(read_clips(source, clips, spec))
            assert [c for c, _ in got] == [c for c, _ in expected]
            for (_, a), (_, b) in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a, b)


def test_clips_in_any_order_and_overlapping_each_come_once(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=90, gop=15)
    clips = [Clip(0, 1.0, 3.0), Clip(1, 0.0, 1.0), Clip(2, 0.5, 1.5), Clip(3, 0.0, 3.0)]
    stream = read_frames(path, clips, SamplingRule(4), ReadOptions(threads=1))
    got = {item.clip.index: item for item in stream}
    assert sorted(got) == [0, 1, 2, 3]
    assert [read_code(f) for f in got[1].frames] == [3, 11, 18, 26]
    assert [read_code(f) for f in got[0].frames] == [37, 52, 67, 82]


def test_clips_given_by_frame_numbers_read_as_sampling_picks_them(video_factory: VideoFactory) -> None:
    """What a server decoding for a client runs (`read_clips_at`, Triton's video_preprocess): the
    client's frame numbers give the tensors `read_clips` gives, on H.264 with B-frames."""
    path = video_factory.make(frames=120, gop=15)
    spec = get_preprocess_preset("viclip")
    clips = segment(probe(path), ClipSpec(length_s=1.0))
    timeline = probe_timeline(path).timeline
    assert timeline is not None
    numbers = clip_frame_numbers(timeline, clips, spec)
    expected = list(read_clips(path, clips, spec))
    got = list(read_clips_at(path.read_bytes(), numbers, spec))
    assert [c.index for c, _ in got] == [c.index for c, _ in expected] == [0, 1, 2, 3]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(VideoDecodeError, match=r"clip 1: frame 120 is past the end \(the video has 120 fr"):
        list(read_clips_at(path, [numbers[0], [*numbers[1][:-1], 120]], spec))
    with pytest.raises(VideoDecodeError, match="clip 0: no frame numbers"):
        list(read_clips_at(path, [[]], spec))


def test_no_clips_reads_nothing(video_factory: VideoFactory) -> None:
    stream = read_frames(video_factory.make(), [], SamplingRule(8))
    assert list(stream) == []
    assert stream.stats.packets == 0
