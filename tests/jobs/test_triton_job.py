"""The embed job on the Triton runtime against a real Triton server: with the repository's
`viclip_video_embed` ensemble the server decodes (decoder `server`), and the shard is the embedded
runtime's."""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tools.triton_server import TritonServer, find_triton
from vidsearch.errors import ConfigError
from vidsearch.jobs import EXIT_WITH_FAILURES, run_embed
from vidsearch.runtime import RuntimeConfig

from ..runtime.models import Repository
from .conftest import Corpus
from .helpers import job, read_output

pytestmark = pytest.mark.triton

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_ENV = Path(os.environ.get("VIDSEARCH_TRITON_ENV", REPO_ROOT / ".venv-triton"))


@pytest.fixture(scope="module")
def triton(repository: Repository) -> Iterator[TritonServer]:
    if not (TRITON_ENV / "bin" / "python").is_file():
        pytest.skip(f"no Triton server environment at {TRITON_ENV}: run `make triton-env`")
    with TritonServer(find_triton(TRITON_ENV), repository.path, startup_timeout_s=120) as server:
        yield server


def test_the_server_decodes_and_the_shard_is_the_embedded_runtimes(
        triton: TritonServer, repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in corpus.videos[:3]:
        shutil.copy(video, folder / video.name)
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    remote = RuntimeConfig(kind="triton", model_repository=repository.path, triton_url=triton.url)
    outputs, failures = [], []
    for name, changes in (("triton", {"runtime": remote, "workers": 2}), ("embedded", {})):
        summary = run_embed(job(folder, tmp_path / name, repository.path, **changes))
        assert summary.decoder == ("server" if name == "triton" else "pyav")
        assert (summary.videos, summary.clips, summary.videos_failed) == (4, 6, 1)
        assert summary.exit_code == EXIT_WITH_FAILURES
        outputs.append(read_output(tmp_path / name))
        lines = (tmp_path / name / "failures.jsonl").read_text().splitlines()
        failures.append([json.loads(line) for line in lines])
    assert sorted(outputs[0]) == sorted(outputs[1])
    assert len(outputs[0]) == 6
    for clip_id, vector in outputs[0].items():
        np.testing.assert_allclose(vector, outputs[1][clip_id], atol=1e-5)
    assert failures[0] == failures[1]
    assert failures[0][0]["error_type"] == "VideoDecodeError"

    # asking for the server decoder where the runtime cannot decode there is refused before any work
    with pytest.raises(ConfigError, match="--decoder server needs --runtime triton"):
        run_embed(job(folder, tmp_path / "refused", repository.path, decoder="server"))
