"""A one-hour 1080p video is streamed: memory grows by far less than 500 MB while reading it all."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .media import VideoFactory, write_long_video

LIMIT_MB = 500


@pytest.mark.slow
def test_one_hour_1080p_is_read_with_bounded_memory(video_factory: VideoFactory) -> None:
    path = write_long_video(video_factory.path("one-hour-1080p.mp4"), seconds=3600)
    script = Path(__file__).with_name("memory_probe.py")
    # A fresh process, so that its peak resident size (VmHWM) measures this reading alone.
    result = subprocess.run([sys.executable, str(script), str(path), "60"], capture_output=True, text=True,
                            timeout=600, check=True)
    report = json.loads(result.stdout)
    assert report["duration_s"] == pytest.approx(3600.0)
    assert report["height"] == 1080
    assert report["clips"] == report["expected_clips"] == 60
    assert report["peak_growth_mb"] < LIMIT_MB, report
    # Holding the decoded frames instead would take 108,000 × 6 MB; even the sampled ones, 2.9 GB.
