"""Fixtures shared by every test folder."""

import pytest

from .video.media import VideoFactory


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
