"""The Ray engine on a real local Ray instance (2 CPUs): the same output as the local engine."""

import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vidsearch.jobs import EXIT_WITH_FAILURES, JobSummary, run_embed
from vidsearch.video import ReadOptions, ShotSpec

from ..runtime.models import Repository
from ..video.media import write_long_video
from .conftest import Corpus
from .helpers import alive, cmdline, descendants, has_open, job, local_ray, read_output, wait_for

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with local_ray():
        yield


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ray_engine_matches_the_local_engine(ray_cluster: None, repository: Repository, corpus: Corpus,
                                             tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    (folder / "empty.mp4").write_bytes(b"")
    local = run_embed(job(folder, tmp_path / "local", repository.path))
    remote = run_embed(job(folder, tmp_path / "ray", repository.path, engine="ray", batch_size=3))
    assert (remote.videos, remote.clips, remote.exit_code) == (9, 16, EXIT_WITH_FAILURES)
    expected, got = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert sorted(got) == sorted(expected) == corpus.clip_ids
    for clip_id, vector in expected.items():
        np.testing.assert_allclose(got[clip_id], vector, atol=1e-5)
    failure = json.loads((tmp_path / "ray" / "failures.jsonl").read_text())
    assert (failure["video_id"], failure["message"]) == ("empty.mp4", "empty file (0 bytes)")
    assert local.failures_total == 1
    # a job started on one engine resumes on the other
    assert run_embed(job(folder, tmp_path / "local", repository.path, engine="ray")).videos == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_decoding_without_progress_is_stopped_at_the_time_limit(
        ray_cluster: None, repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    """The local engine's watchdog, on Ray: a decoding process frozen with SIGSTOP (as by a read on a
    hung mount) costs its video a TimeLimitExceeded line, and the job ends with every other video."""
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "a-long.mp4", seconds=300)
    read = ReadOptions(time_limit_s=1.0, on_clip_error="skip")
    results: list[JobSummary] = []
    embed = job(folder, tmp_path / "out", repository.path, engine="ray", read=read,
                scenes=ShotSpec(time_limit_s=5.0))
    runner = threading.Thread(target=lambda: results.append(run_embed(embed)))
    runner.start()

    def on_the_long_video() -> list[int]:
        return [p for p in descendants(os.getpid())
                if "spawn_main" in cmdline(p) and has_open(p, "a-long.mp4")]

    (frozen,) = wait_for(on_the_long_video, 120, "no decoding process took up the long video")
    os.kill(frozen, signal.SIGSTOP)  # in shot detection, which sends nothing until it is done
    runner.join(timeout=200)
    assert not runner.is_alive(), "the watchdog did not fire"
    (summary,) = results
    assert summary.exit_code == EXIT_WITH_FAILURES
    (failure,) = map(json.loads, (tmp_path / "out" / "failures.jsonl").read_text().splitlines())
    assert (failure["video_id"], failure["error_type"]) == ("a-long.mp4", "TimeLimitExceeded")
    assert "time limit of 8 s" in failure["message"]  # shot detection 5 s + 3 × 1 s (load, probe, decode)
    assert sorted(read_output(tmp_path / "out")) == corpus.clip_ids
    wait_for(lambda: not alive(frozen), 10, "the frozen process was not stopped")
