"""What a job embeds: a folder, a glob or a manifest → work items with stable video ids.

A video id must be the same on every run over the same input, since resuming skips the ids the
ledger holds and clip ids are built from it: it is the file's path relative to the folder (or to the
glob's fixed leading folders), or a manifest's `video_id` column, else its `video` path as written
relative to the manifest. Items are sorted by video id, so two runs list them in the same order.
"""

import glob
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from vidsearch.errors import ConfigError, JobError
from vidsearch.video.manifest import manifest_videos
from vidsearch.video.sniff import looks_like_video

VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".ogv",
})  # fmt: skip
MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv"})


@dataclass(frozen=True)
class WorkItem:
    """One video to embed."""

    video_id: str
    path: str
    uri: str


def _item(video_id: str, path: Path) -> WorkItem:
    absolute = path.absolute()
    return WorkItem(video_id, str(absolute), absolute.as_uri())


def _in_folder(path: Path) -> bool:
    """A video suffix lists a file whatever it holds (so that a bad one fails visibly), unless it is a
    folder; any other regular file is listed if its content is a video (`looks_like_video`)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return not path.is_dir()
    return looks_like_video(path)


def _folder(root: Path) -> list[WorkItem]:
    return [_item(p.relative_to(root).as_posix(), p) for p in root.rglob("*") if _in_folder(p)]


def _glob(pattern: str) -> list[WorkItem]:
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    found = (Path(p) for p in glob.glob(pattern, recursive=True))
    return [_item(p.relative_to(base).as_posix(), p) for p in found if p.is_file()]


def _manifest(path: Path) -> list[WorkItem]:
    try:
        videos = manifest_videos(path)
    except ConfigError as err:
        raise JobError(f"input manifest: {err}") from None
    items = []
    for video, video_id in videos:
        name = video_id or (video.relative_to(path.parent).as_posix()
                            if video.is_relative_to(path.parent) else video.as_posix())
        items.append(_item(name, video))
    return items


def list_inputs(spec: str) -> list[WorkItem]:
    """The videos `spec` names (a folder, a manifest, a glob or one file), sorted by video id.

    Files that are missing or not videos at all are kept: they fail when decoded and are recorded
    in the failures file, never silently left out. A folder lists the files named by a video suffix,
    and the others whose content is a video; a FIFO, socket or device is never read while listing.
    """
    path = Path(spec)
    if path.is_dir():
        items = _folder(path)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        items = _manifest(path)
    elif path.exists():  # one file; if not a regular one, it fails with a line saying so
        items = [_item(path.name, path)]
    elif glob.has_magic(spec):
        items = _glob(spec)
    else:
        raise JobError(f"{spec}: no such folder, manifest or video file, and not a glob pattern")
    if not items:
        raise JobError(f"{spec}: names no videos (looked for {', '.join(sorted(VIDEO_SUFFIXES))}, "
                       f"and for video content in files named otherwise)")
    items.sort(key=lambda item: item.video_id)
    ids = [item.video_id for item in items]
    twice = sorted({i for i, j in itertools.pairwise(ids) if i == j})
    if twice:
        raise JobError(f"{spec}: video ids must be unique, these appear more than once: {twice[:5]}")
    return items


def identity_of(spec: str) -> str:
    """The input as recorded in a job's identity: absolute, so a resume from elsewhere still matches."""
    return os.path.abspath(spec)
