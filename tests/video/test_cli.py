"""`vidsearch video probe` and `vidsearch video clips` on a real file."""

import json

from typer.testing import CliRunner

from vidsearch.cli import app

from .media import VideoFactory


def test_probe_prints_json(video_factory: VideoFactory) -> None:
    result = CliRunner().invoke(app, ["video", "probe", str(video_factory.make(frames=75, fps=25))])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["codec"], info["frame_count"], info["duration_s"]) == ("h264", 75, 3.0)


def test_clips_prints_one_line_per_clip(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=120, shots=(30, 75))
    result = CliRunner().invoke(app, ["video", "clips", str(path), "--length", "2", "--shots"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["0\t0.000\t1.000", "1\t1.000\t2.500", "2\t2.500\t4.000"]


def test_a_bad_file_is_an_error_message_not_a_traceback() -> None:
    result = CliRunner().invoke(app, ["video", "probe", "/nonexistent/video.mp4"])
    assert result.exit_code == 1
    assert "error: /nonexistent/video.mp4: no such file" in result.output
