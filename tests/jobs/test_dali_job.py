"""`vidsearch embed --decoder dali`, the real command, on VP9 files DALI's CPU decoder reads (the GPU
path differs only in the decoder's device): the same output as `--decoder pyav` within tolerance, an
H.264 file falls back to PyAV with a warning, a bad file is a failure as with PyAV, and PyAV decoding
processes can work beside the DALI ones (`--cpu-workers`)."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.jobs import EXIT_WITH_FAILURES, run_embed
from vidsearch.video import ClipSpec

from ..runtime.models import Repository
from ..video.media import VideoFactory, VideoSpec
from .helpers import job, local_ray, read_output

pytest.importorskip("nvidia.dali")

ONE_S = ClipSpec(1.0)
VP9 = VideoSpec(codec="libvpx-vp9", suffix=".webm", width=96, height=72, fps=10, frames=30, gop=10)


@pytest.fixture(scope="module")
def vp9_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three VP9 files (3 clips each), one H.264 file (DALI's CPU decoder cannot: PyAV), one bad file."""
    factory = VideoFactory(tmp_path_factory.mktemp("vp9-media"))
    folder = tmp_path_factory.mktemp("vp9-corpus")
    for number, frames in enumerate((30, 31, 29)):
        shutil.copy(factory.make(replace(VP9, frames=frames)),
                    folder / f"v{number}.webm")
    shutil.copy(factory.make(width=96, height=72, fps=10, frames=20), folder / "h264.mp4")
    (folder / "broken.webm").write_bytes(b"\x1aE\xdf\xa3 not really webm")
    return folder


def _cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[float]:
    return [float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in sorted(a)]


def _failures(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]


def test_embed_with_dali_matches_pyav(repository: Repository, vp9_folder: Path, tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    runner = CliRunner()
    args = ["embed", str(vp9_folder), "--model-repository", str(repository.path), "--clip-len", "1",
            "--threads", "1", "--no-progress"]
    pyav = runner.invoke(app, [*args, "--out", str(tmp_path / "pyav"), "--decoder", "pyav"])
    assert pyav.exit_code == EXIT_WITH_FAILURES, pyav.output
    capfd.readouterr()
    dali = runner.invoke(app, [*args, "--out", str(tmp_path / "dali"), "--decoder", "dali"])
    assert dali.exit_code == EXIT_WITH_FAILURES, dali.output
    logged = capfd.readouterr().err
    assert "h264.mp4: DALI decodes h264 only on a GPU" in logged  # from the decoding process
    assert "decoding it with PyAV instead" in logged
    assert "dali-cpu decoding" in dali.output
    expected, got = read_output(tmp_path / "pyav"), read_output(tmp_path / "dali")
    assert sorted(got) == sorted(expected)
    assert len(got) >= 3 * 3 + 1  # every clip of the VP9 files and of the H.264 file
    assert min(_cosines(expected, got)) > 0.999
    summary = json.loads((tmp_path / "dali" / "summary.json").read_text())
    assert (summary["decoder"], summary["videos_failed"]) == ("dali-cpu", 1)
    (broken,) = _failures(tmp_path / "dali")
    assert (broken["video_id"], broken["error_type"]) == ("broken.webm", "VideoDecodeError")
    assert _failures(tmp_path / "pyav") == [broken]  # the same typed error, word for word


def test_pyav_processes_beside_the_dali_ones(repository: Repository, vp9_folder: Path,
                                             tmp_path: Path) -> None:
    alone = run_embed(job(vp9_folder, tmp_path / "alone", repository.path, decoder="dali",
                          clips=ONE_S))
    both = run_embed(job(vp9_folder, tmp_path / "both", repository.path, decoder="dali", cpu_workers=1,
                         clips=ONE_S))
    assert (both.videos, both.clips) == (alone.videos, alone.clips)
    assert alone.videos == 5
    expected, got = read_output(tmp_path / "alone"), read_output(tmp_path / "both")
    assert sorted(got) == sorted(expected)
    assert min(_cosines(expected, got)) > 0.999


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_ray_engine_decodes_with_dali(repository: Repository, vp9_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    clips = ONE_S
    local = run_embed(job(vp9_folder, tmp_path / "local", repository.path, decoder="pyav", clips=clips))
    with local_ray():
        remote = run_embed(job(vp9_folder, tmp_path / "ray", repository.path, engine="ray", decoder="dali",
                               clips=clips, batch_size=3))
    assert (remote.decoder, remote.videos, remote.clips) == ("dali-cpu", 5, local.clips)
    expected, got = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert sorted(got) == sorted(expected)
    assert min(_cosines(expected, got)) > 0.999
