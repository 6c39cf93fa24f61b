"""The Triton runtime against a real Triton server (the `tritonserver` of nvidia-pytriton, Python backend,
on the CPU) serving the same repository: it must answer exactly as the embedded runtime does, decoding
video on the server (the `viclip_video_embed` ensemble) as the embedded runtime decodes it in-process."""

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from tools.triton_server import TritonServer, find_triton
from vidsearch.errors import ConfigError, RuntimeUnavailableError, VideoDecodeError
from vidsearch.runtime import ModelRuntime, RuntimeConfig, open_runtime
from vidsearch.video import Clip, ClipSpec, Preprocess, probe, probe_timeline, read_clips, segment
from vidsearch.video.dali import clip_frame_numbers
from vidsearch.video.decode import read_clips_at

from .models import Repository

pytestmark = pytest.mark.triton

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_ENV = Path(os.environ.get("VIDSEARCH_TRITON_ENV", REPO_ROOT / ".venv-triton"))


@pytest.fixture(scope="module")
def triton(repository: Repository) -> Iterator[TritonServer]:
    if not (TRITON_ENV / "bin" / "python").is_file():
        pytest.skip(f"no Triton server environment at {TRITON_ENV}: run `make triton-env`")
    with TritonServer(find_triton(TRITON_ENV), repository.path, startup_timeout_s=120) as server:
        yield server


@pytest.fixture(scope="module")
def runtimes(triton: TritonServer, repository: Repository) -> Iterator[tuple[ModelRuntime, ModelRuntime]]:
    config = RuntimeConfig(kind="triton", model_repository=repository.path, triton_url=triton.url)
    remote = open_runtime(config)
    local = open_runtime(RuntimeConfig(model_repository=repository.path))
    yield remote, local
    remote.close()
    local.close()


def test_triton_answers_as_the_embedded_runtime(runtimes: tuple[ModelRuntime, ModelRuntime]) -> None:
    remote, local = runtimes
    assert remote.kind == "triton"
    assert remote.ready()
    texts = ["a red circle moves to the left", "a blue square grows"]
    np.testing.assert_allclose(remote.embed_text(texts), local.embed_text(texts), atol=1e-5)
    rng = np.random.default_rng(1)
    clips = rng.standard_normal((5, 8, 3, 32, 32)).astype(np.float32)  # two requests (model batch limit 4)
    np.testing.assert_allclose(remote.embed_video(clips), local.embed_video(clips), atol=1e-5)
    video = rng.standard_normal((2, 3, 4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(remote.classify(video), local.classify(video), atol=1e-4)


def test_a_server_without_the_models_is_reported_unavailable(repository: Repository) -> None:
    config = RuntimeConfig(kind="triton", model_repository=repository.path, triton_url="127.0.0.1:1",
                           triton_timeout_s=0.5)
    with pytest.raises(RuntimeUnavailableError, match=r"did not have viclip_text v1, .* ready within"):
        open_runtime(config)


def test_the_service_answers_the_same_on_either_runtime(triton: TritonServer, repository: Repository,
                                                        tmp_path: Path) -> None:
    from vidsearch.client import SearchClient
    from vidsearch.serving import SearchServer, load_settings

    from .models import SCENE_S, write_videos

    videos = write_videos(tmp_path / "videos", 2)
    answers = []
    for kind in ("triton", "embedded"):
        settings = load_settings(None, port=0, metrics_port=None, http={"enabled": False},
                                 index=tmp_path / kind,
                                 allowed_roots=(tmp_path / "videos",), video={"clip_length_s": SCENE_S},
                                 runtime={"kind": kind, "model_repository": repository.path,
                                          "triton_url": triton.url})
        with SearchServer(settings) as server, SearchClient(server.address) as client:
            assert [o.clips for o in client.ingest([v.name for v in videos])] == [3, 3]
            stats = client.index_stats()
            assert (stats.runtime, stats.video_decoding) == (kind, "server" if kind == "triton" else "pyav")
            hits = client.search("a red circle moves to the left", top_k=6).hits
            # SearchByVideo and EmbedVideo decode on the Triton server (the ensemble), here in-process
            asked = videos[1].read_bytes()
            similar = client.search_by_video(video=asked, start_s=2.0, end_s=4.0, top_k=6).hits
            embedded = client.embed_video(video=videos[0].read_bytes(), clip_length_s=SCENE_S).embeddings
            with pytest.raises(grpc.RpcError) as garbage:
                client.embed_video(video=b"not a video" * 100, clip_length_s=SCENE_S)
            answers.append(([(h.clip_id, h.score) for h in hits], [(h.clip_id, h.score) for h in similar],
                            embedded, (garbage.value.code(), garbage.value.details())))
    for remote, local in zip(answers[0][:2], answers[1][:2], strict=True):
        assert [c for c, _ in remote] == [c for c, _ in local]
        np.testing.assert_allclose([s for _, s in remote], [s for _, s in local], atol=1e-5)
    assert answers[0][1][0][0] == f"{videos[1].name}#00001"  # the clip asked about finds itself first
    np.testing.assert_allclose(answers[0][2], answers[1][2], atol=1e-5)
    assert answers[0][3] == answers[1][3]
    assert answers[0][3][0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from .models import write_videos

    return write_videos(tmp_path_factory.mktemp("h264"), 2)


def _clips(video: Path, spec: Preprocess) -> tuple[list[Clip], list[np.ndarray]]:
    clips = segment(probe(video), ClipSpec(length_s=1.0))
    return clips, clip_frame_numbers(probe_timeline(video).timeline, clips, spec)


def test_the_ensemble_decodes_on_the_server_as_the_embedded_runtime_does(
        runtimes: tuple[ModelRuntime, ModelRuntime], h264: list[Path]) -> None:
    remote, local = runtimes
    assert remote.decodes_on_server
    assert not local.decodes_on_server
    spec = local.facts.vision.preprocess
    assert spec is not None
    for video in h264:
        clips, frames = _clips(video, spec)
        assert len(clips) == 6  # two requests of the ensemble (batch limit 4)
        served = remote.embed_encoded(video.read_bytes(), frames, name=video.name)
        here = local.embed_video(np.stack([tensor for _, tensor in read_clips(video, clips, spec)]))
        np.testing.assert_allclose(served, here, atol=1e-5)
        assert float(np.min(np.sum(served * here, axis=1))) >= 0.9999


def test_bad_video_through_the_ensemble_is_the_embedded_paths_decode_error(
        runtimes: tuple[ModelRuntime, ModelRuntime], h264: list[Path]) -> None:
    remote, local = runtimes
    spec = local.facts.vision.preprocess
    assert spec is not None
    _, frames = _clips(h264[0], spec)
    past_end = [np.arange(100, 100 + spec.frames, dtype=np.int32)]  # the video has 60 frames
    for data, wanted in ((b"\x00garbage" * 500, frames[:1]), (b"", frames[:1]),
                         (h264[0].read_bytes(), past_end)):
        with pytest.raises(VideoDecodeError) as here:
            list(read_clips_at(data, wanted, spec))
        with pytest.raises(VideoDecodeError) as served:
            remote.embed_encoded(data, wanted, name="upload.mp4")
        assert served.value.path == "upload.mp4"
        assert served.value.reason == here.value.reason
    assert "frame 100 is past the end (the video has 60 frames" in served.value.reason


def test_without_the_ensemble_video_is_decoded_in_this_process(
        triton: TritonServer, repository: Repository, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from vidsearch.runtime.repository import read_repository
    from vidsearch.runtime.triton import TritonBackend

    older = tmp_path / "older"  # a repository exported before the ensemble: its towers only
    shutil.copytree(repository.path, older,
                    ignore=shutil.ignore_patterns("video_preprocess", "viclip_video_embed"))
    config = RuntimeConfig(kind="triton", model_repository=older, triton_url=triton.url)
    with caplog.at_level(logging.WARNING), open_runtime(config) as runtime:
        assert not runtime.decodes_on_server
        with pytest.raises(ConfigError, match="decode the clips and call embed_video"):
            runtime.embed_encoded(b"", [])
    assert "the repository has no video-decoding ensemble" in caplog.text
    caplog.clear()
    # the repository has it, the server does not (serving another version): decoded here as well
    models = read_repository(RuntimeConfig(kind="triton", model_repository=repository.path))
    assert models.video_embed is not None
    models = replace(models, video_embed=replace(models.video_embed, version=7))
    with caplog.at_level(logging.WARNING), \
            ModelRuntime(models, TritonBackend(models, triton.url), config) as runtime:
        assert not runtime.decodes_on_server
    assert "the server has no video-decoding ensemble" in caplog.text
