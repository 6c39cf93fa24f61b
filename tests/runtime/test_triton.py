"""The Triton runtime against a real Triton server (the `tritonserver` of nvidia-pytriton, Python backend,
on the CPU) serving the same repository: it must answer exactly as the embedded runtime does."""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tools.triton_server import TritonServer, find_triton
from vidsearch.errors import RuntimeUnavailableError
from vidsearch.runtime import ModelRuntime, RuntimeConfig, open_runtime

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
            assert client.index_stats().runtime == kind
            hits = client.search("a red circle moves to the left", top_k=6).hits
            answers.append([(h.clip_id, h.score) for h in hits])
    assert [c for c, _ in answers[0]] == [c for c, _ in answers[1]]
    np.testing.assert_allclose([s for _, s in answers[0]], [s for _, s in answers[1]], atol=1e-5)
