"""Fixtures of the job tests: the session's tiny exported models and a small corpus of real H.264 files."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from ..runtime.conftest import repository  # noqa: F401 - a fixture, shared
from ..runtime.models import SCENE_S, write_videos

VIDEOS = 8
SCENES = 2  # clips per video with clips of CLIP_LEN
CLIP_LEN = SCENE_S


@dataclass(frozen=True)
class Corpus:
    folder: Path
    videos: tuple[Path, ...]

    @property
    def clip_ids(self) -> list[str]:
        return sorted(f"{p.name}#{k:05d}" for p in self.videos for k in range(SCENES))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    folder = tmp_path_factory.mktemp("corpus")
    return Corpus(folder, tuple(write_videos(folder, VIDEOS, scenes=SCENES)))

