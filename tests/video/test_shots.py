"""Shot cuts (PySceneDetect's content detector) on real encoded video, and clips within shots."""

import pytest

from vidsearch.errors import ConfigError
from vidsearch.video import ClipSpec, ShotSpec, detect_cuts, probe, segment

from .media import VideoFactory

CUT_FRAMES = (30, 75)  # at 30 fps: 1.0 s and 2.5 s


def test_cuts_are_found_where_the_picture_changes(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=120, shots=CUT_FRAMES)
    assert detect_cuts(path) == pytest.approx([1.0, 2.5], abs=1 / 30 + 1e-6)


def test_cuts_in_variable_frame_rate_video_land_at_the_right_second(video_factory: VideoFactory) -> None:
    pts = tuple(i * 25 + (i // 10) * 30 for i in range(120))  # ms; intervals grow from 25 to 55 ms
    path = video_factory.make(suffix=".mkv", frames=120, shots=CUT_FRAMES, pts=pts, time_base=(1, 1000))
    assert probe(path).variable_frame_rate
    assert detect_cuts(path) == pytest.approx([pts[30] / 1000, pts[75] / 1000], abs=0.06)


def test_clips_stay_within_shots(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=120, shots=CUT_FRAMES)
    clips = segment(probe(path), ClipSpec(length_s=1.0, min_tail_s=0.2), cuts=detect_cuts(path))
    spans = [(round(c.start_s, 2), round(c.end_s, 2)) for c in clips]
    assert spans == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5), (2.5, 3.5), (3.5, 4.0)]


def test_a_single_shot_has_no_cuts(video_factory: VideoFactory) -> None:
    assert detect_cuts(video_factory.make(frames=60, shots=(1000,))) == []


def test_a_higher_threshold_finds_fewer_cuts(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=120, shots=CUT_FRAMES)
    assert detect_cuts(path, ShotSpec(threshold=255.0)) == []


def test_bad_shot_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        ShotSpec(threshold=0)
