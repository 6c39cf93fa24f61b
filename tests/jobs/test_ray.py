"""The Ray engine on a real local Ray instance (2 CPUs): the same output as the local engine."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vidsearch.jobs import EXIT_WITH_FAILURES, run_embed

from ..runtime.models import Repository
from .conftest import Corpus
from .helpers import job, read_output

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ray_engine_matches_the_local_engine(local_ray: None, repository: Repository, corpus: Corpus,
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
