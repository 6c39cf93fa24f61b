"""The written-once rules: clip windows and the tail, frame sampling, and which frame shows at a time."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidsearch.errors import ConfigError, VideoDecodeError
from vidsearch.video import Clip, ClipSpec, Preprocess, SamplingRule, VideoInfo, sample_timestamps, segment
from vidsearch.video.timeline import frame_numbers
from vidsearch.video.transform import prepare_frame


def _info(duration: float, frames: int | None = None, has_video: bool = True, has_audio: bool = False
          ) -> VideoInfo:
    count = round(duration * 30) if frames is None else frames
    return VideoInfo("clip.mp4", has_video, has_audio, "h264", 64, 48, 0, duration, 30.0, False, count)


def _spans(clips: list[Clip]) -> list[tuple[float, float]]:
    return [(round(c.start_s, 6), round(c.end_s, 6)) for c in clips]


def test_fixed_windows_tile_the_video_and_keep_a_long_enough_tail() -> None:
    clips = segment(_info(25.0), ClipSpec(length_s=10.0, min_tail_s=1.0))
    assert _spans(clips) == [(0, 10), (10, 20), (20, 25)]
    assert [c.index for c in clips] == [0, 1, 2]


def test_a_tail_shorter_than_min_tail_is_dropped() -> None:
    assert _spans(segment(_info(20.5), ClipSpec(10.0, min_tail_s=1.0))) == [(0, 10), (10, 20)]


def test_an_exact_fit_has_no_tail() -> None:
    assert _spans(segment(_info(30.0), ClipSpec(10.0))) == [(0, 10), (10, 20), (20, 30)]


def test_a_video_shorter_than_one_window_is_one_clip_however_short() -> None:
    assert _spans(segment(_info(0.2, frames=6), ClipSpec(10.0, min_tail_s=5.0))) == [(0, 0.2)]


def test_overlapping_windows_make_one_tail_only() -> None:
    clips = segment(_info(27.0), ClipSpec(length_s=10.0, stride_s=5.0))
    assert _spans(clips) == [(0, 10), (5, 15), (10, 20), (15, 25), (20, 27)]


def test_cuts_split_sections_which_are_windowed_on_their_own() -> None:
    clips = segment(_info(30.0), ClipSpec(10.0, min_tail_s=1.0), cuts=[4.0, 16.5, 0.0, 30.0, 99.0])
    assert _spans(clips) == [(0, 4), (4, 14), (14, 16.5), (16.5, 26.5), (26.5, 30)]


def test_videos_without_frames_cannot_be_segmented() -> None:
    with pytest.raises(VideoDecodeError, match="audio only") as excinfo:
        segment(_info(5.0, frames=0, has_video=False, has_audio=True), ClipSpec())
    assert excinfo.value.path == "clip.mp4"
    with pytest.raises(VideoDecodeError, match="zero duration"):
        segment(_info(0.0, frames=0), ClipSpec())


@pytest.mark.parametrize(
    "kwargs", [{"length_s": 0}, {"stride_s": 11.0}, {"stride_s": 0.0}, {"min_tail_s": -1}]
)
def test_bad_clip_specs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ClipSpec(**kwargs)


def test_segment_middle_takes_the_middle_of_equal_segments() -> None:
    stamps = sample_timestamps(Clip(0, 10.0, 18.0), SamplingRule(8), fps=30.0)
    assert stamps == pytest.approx([10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5, 17.5])


def _official_middle_indices(frames: int, count: int) -> list[int]:
    """InternVideo2's evaluation (`get_frame_indices`, sample="middle"), written out for the test."""
    ranges = min(frames, count)
    edges = np.linspace(0, count, ranges + 1).astype(int)
    picked = [(int(edges[i]) + int(edges[i + 1]) - 1) // 2 for i in range(ranges)]
    return picked + [picked[-1]] * (frames - ranges)


@pytest.mark.parametrize("count", [1, 3, 4, 7, 20, 30, 61, 250])
def test_segment_middle_frame_picks_the_official_evaluation_frames(count: int) -> None:
    fps = 25.0
    clip = Clip(0, 2.0, 2.0 + count / fps)
    stamps = sample_timestamps(clip, SamplingRule(4, "segment_middle_frame"), fps)
    times = 2.0 + np.arange(count) / fps  # the clip's frames, one every 1/fps
    assert frame_numbers(times, stamps) == _official_middle_indices(4, count)


def test_centre_stride_is_symmetric_about_the_centre() -> None:
    stamps = sample_timestamps(Clip(0, 0.0, 10.0), SamplingRule(16, "centre_stride", 4), fps=32.0)
    steps = np.diff(stamps)
    assert steps == pytest.approx([4 / 32] * 15)
    assert np.mean(stamps) == pytest.approx(5.0)


def test_centre_stride_clamps_into_a_short_clip() -> None:
    stamps = sample_timestamps(Clip(0, 1.0, 1.5), SamplingRule(16, "centre_stride", 4), fps=30.0)
    assert min(stamps) == 1.0
    assert max(stamps) < 1.5
    assert stamps == sorted(stamps)


def test_the_frame_for_a_time_is_the_one_whose_interval_contains_it() -> None:
    times = np.array([0.0, 0.04, 0.1, 0.3])  # variable intervals
    chosen = frame_numbers(times, [-1.0, 0.0, 0.039, 0.04, 0.0999, 0.1, 0.29, 0.3, 5.0])
    assert chosen == [0, 0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("size", [(1080, 1920, 224, 224), (720, 1280, 224, 398), (100, 150, 224, 224)])
def test_fast_bilinear_resize_equals_torchs_float_kernel(size: tuple[int, int, int, int]) -> None:
    height, width, out_h, out_w = size
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    spec = Preprocess(SamplingRule(8), size=(out_h, out_w))
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    expected = F.interpolate(image, size=(out_h, out_w), mode="bilinear", align_corners=False)
    expected_u8 = expected[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    difference = np.abs(prepare_frame(rgb, spec).astype(int) - expected_u8.astype(int))
    assert difference.max() <= 1  # float rounding at exact halves only
    assert (difference > 0).mean() < 1e-3
