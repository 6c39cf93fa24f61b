"""Fixtures of the serving tests: real servers on 127.0.0.1 over the session's tiny exported models,
real H.264 videos under an allowed root, and a module-wide server with those videos ingested."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vidsearch.client import SearchClient
from vidsearch.serving import SearchServer, ServerSettings, load_settings

from ..runtime.models import SCENE_S, Repository, shared_repository, write_videos

CLIPS_PER_VIDEO = 3
VIDEOS = ("clip-0.mp4", "clip-1.mp4", "clip-2.mp4")


@dataclass(frozen=True)
class Media:
    root: Path  # the allowed root
    videos: tuple[Path, ...]  # under the root
    not_video: Path  # under the root: random bytes named .mp4
    outside: Path  # a real video outside the root
    escape: Path  # a symlink under the root pointing at `outside`


@dataclass(frozen=True)
class Running:
    server: SearchServer
    client: SearchClient
    media: Media


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return shared_repository(tmp_path_factory)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    base = tmp_path_factory.mktemp("media")
    root = base / "root"
    videos = write_videos(root, len(VIDEOS), scenes=CLIPS_PER_VIDEO)
    not_video = root / "not-a-video.mp4"
    not_video.write_bytes(b"\x00\x01 this is not a video " * 100)
    outside = write_videos(base / "elsewhere", 1, scenes=1, seed=9)[0]
    escape = root / "escape.mp4"
    escape.symlink_to(outside)
    return Media(root, tuple(videos), not_video, outside, escape)


def settings_for(repository: Repository, media: Media, index: Path | str, **changes: Any) -> ServerSettings:
    """Settings of a test server: any free ports on 127.0.0.1, the tiny models, clips of one scene."""
    values: dict[str, Any] = {
        "port": 0, "metrics_port": 0, "http": {"port": 0}, "index": index, "allowed_roots": (media.root,),
        "grace_s": 0.5,
        "runtime": {"model_repository": repository.path, "threads": 1},
        "video": {"clip_length_s": SCENE_S},
    }  # fmt: skip
    for key, value in changes.items():
        values[key] = {**values[key], **value} if isinstance(values.get(key), dict) else value
    return load_settings(None, **values)


@pytest.fixture(scope="module")
def running(repository: Repository, media: Media,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server with the three videos ingested: clip-0 and clip-1 tagged `news`, clip-2 tagged `sport`."""
    index = tmp_path_factory.mktemp("index") / "index"
    settings = settings_for(repository, media, index, limits={"max_message_bytes": 2 << 20,
                                                              "max_upload_bytes": 1 << 20})
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        client.ingest(list(VIDEOS[:2]), tags=["news"])
        client.ingest([VIDEOS[2]], tags=["sport"])
        yield Running(server, client, media)
