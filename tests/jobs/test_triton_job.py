"""The embed job on the Triton runtime against a real Triton server: with the repository's
`viclip_video_embed` ensemble the server decodes (decoder `server`), on the local engine and on Ray,
and the shard and the failures are the embedded runtime's (PyAV's), a clip the server cannot decode
included."""

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
from vidsearch.video import ClipSpec

from ..runtime.models import Repository
from ..video.media import VideoFactory, damage_packet, packet_layout
from .conftest import Corpus
from .helpers import job, local_ray, read_output

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


def _with_a_damaged_clip(folder: Path, corpus: Corpus, video_factory: VideoFactory) -> None:
    """Two corpus videos and a 5 s video (1 s clips) whose third second has a packet of noise: PyAV
    leaves clip 2 out; the server, sent all five clips, fails the request."""
    folder.mkdir()
    for video in corpus.videos[:2]:
        shutil.copy(video, folder / video.name)
    path = video_factory.make(frames=150, gop=30, width=320, height=240)  # keyframe every second
    layout = packet_layout(path)
    victim = next(i for i in range(70, 90) if not layout[i][3])
    damage_packet(path, folder / "damaged.mp4", victim)


def _same_as_pyav(tmp_path: Path, names: tuple[str, str]) -> None:
    """The two jobs' shards hold the same clips and vectors, and the damaged video's one failure is
    clip 2 left out (its other clips went in) on both."""
    triton, embedded = (read_output(tmp_path / name) for name in names)
    assert sorted(triton) == sorted(embedded)
    assert [c for c in sorted(triton) if c.startswith("damaged.mp4")] == [
        f"damaged.mp4#{k:05d}" for k in (0, 1, 3, 4)]
    for clip_id, vector in triton.items():
        np.testing.assert_allclose(vector, embedded[clip_id], atol=1e-5)
    for name in names:
        failure = _failures(tmp_path / name)["damaged.mp4"]
        assert failure["error_type"] == "ClipDecodeError"
        assert failure["message"].startswith("1 of 5 clips left out; first: ")


def _failures(out: Path) -> dict[str, dict[str, str]]:
    lines = (out / "failures.jsonl").read_text().splitlines()
    return {failure["video_id"]: failure for failure in map(json.loads, lines)}


def test_a_clip_the_server_cannot_decode_is_left_out_as_pyav_leaves_it_out(
        triton: TritonServer, repository: Repository, corpus: Corpus, video_factory: VideoFactory,
        tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    _with_a_damaged_clip(folder, corpus, video_factory)
    remote = RuntimeConfig(kind="triton", model_repository=repository.path, triton_url=triton.url)
    clips = ClipSpec(length_s=1.0)
    served = run_embed(job(folder, tmp_path / "triton", repository.path, runtime=remote, clips=clips))
    here = run_embed(job(folder, tmp_path / "embedded", repository.path, clips=clips))
    assert (served.decoder, here.decoder) == ("server", "pyav")
    assert (served.videos, served.videos_failed, served.clips) == (here.videos, 1, here.clips)
    _same_as_pyav(tmp_path, ("triton", "embedded"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_ray_engine_sends_encoded_video_to_the_server(
        triton: TritonServer, repository: Repository, corpus: Corpus, video_factory: VideoFactory,
        tmp_path: Path) -> None:
    """Ray's decoding tasks read and demux only; its actors send the bytes to the ensemble."""
    pytest.importorskip("ray")
    folder = tmp_path / "videos"
    _with_a_damaged_clip(folder, corpus, video_factory)
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    remote = RuntimeConfig(kind="triton", model_repository=repository.path, triton_url=triton.url)
    clips = ClipSpec(length_s=1.0)
    with local_ray():
        served = run_embed(job(folder, tmp_path / "ray", repository.path, runtime=remote, clips=clips,
                               engine="ray", batch_size=3))
    here = run_embed(job(folder, tmp_path / "local", repository.path, clips=clips))
    assert served.decoder == "server"
    assert (served.videos, served.videos_failed, served.clips) == (4, 2, here.clips)
    _same_as_pyav(tmp_path, ("ray", "local"))
    assert _failures(tmp_path / "ray")["broken.mp4"] == _failures(tmp_path / "local")["broken.mp4"]
