"""Fixtures shared by every test folder."""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .video.media import VideoFactory

if TYPE_CHECKING:
    from vidsearch.index.milvus import LocalMilvus


@pytest.fixture(scope="session")
def video_factory(tmp_path_factory: pytest.TempPathFactory) -> VideoFactory:
    """Real encoded test videos (PyAV), made on demand and cached for the whole session.

    `video_factory.make(codec="libvpx-vp9", suffix=".webm", frames=90)` returns the path of a file
    whose frames show their own number (`tests.video.media.read_code`); see `VideoSpec` for options.
    """
    return VideoFactory(tmp_path_factory.mktemp("media"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are reported as skipped, never as passed, on a machine without a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalMilvus"]:
    """One real standalone Milvus for the whole session, started on first use, reachable on 127.0.0.1 only.

    It is the `milvus` wheel's server (installed by `make test`), with its data in a temporary folder;
    a start that fails raises with the server's log; the server and its launcher are killed at the end.
    """
    from vidsearch.index.milvus import LocalMilvus

    server = LocalMilvus(Path(tmp_path_factory.mktemp("milvus")), startup_timeout_s=240)
    server.start()
    try:
        yield server
    finally:
        server.stop()
