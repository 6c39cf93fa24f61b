"""Manifests: which clip of which video goes with which caption (and label).

One row per clip: `video` (a path, relative to the manifest's folder unless absolute), `start` and
`end` in seconds (both empty: the whole video), `caption`, and an optional `label`. Written as JSON
Lines or CSV (by suffix); further columns are kept as strings in `extra`, so a manifest can carry
what evaluation needs (the synthetic set's colour, shape and motion) without a second file.

InternVid's annotations (YouTube id, "HH:MM:SS.mmm" start and end, caption) map onto the same rows,
given where each video lies locally (`read_internvid`). Training reads the rows; the batch embedding
job (`vidsearch embed`) reads only the videos they name (`manifest_videos`), so the same file serves both.
"""

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidsearch.errors import ConfigError
from vidsearch.formats.atomic import atomic_path

log = logging.getLogger(__name__)

_COLUMNS = ("video", "start", "end", "caption", "label")
_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class ManifestRow:
    """One clip and its text. `start_s`/`end_s` are None for the whole video."""

    video: str
    start_s: float | None
    end_s: float | None
    caption: str
    label: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.video:
            raise ConfigError("manifest row: empty video path")
        if (self.start_s is None) != (self.end_s is None):
            raise ConfigError(f"manifest row {self.video}: give both start and end, or neither")
        if self.start_s is not None and self.end_s is not None and not 0 <= self.start_s < self.end_s:
            raise ConfigError(
                f"manifest row {self.video}: need 0 ≤ start < end, got {self.start_s}, {self.end_s}"
            )

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "video": self.video,
            "start": self.start_s,
            "end": self.end_s,
            "caption": self.caption,
        }
        if self.label is not None:
            record["label"] = self.label
        return {**record, **self.extra}


@dataclass(frozen=True)
class Manifest:
    """Rows plus the folder their relative video paths start from."""

    rows: tuple[ManifestRow, ...]
    root: Path

    def __len__(self) -> int:
        return len(self.rows)

    def path_of(self, row: ManifestRow) -> Path:
        return _resolve(self.root, row.video)

    def labels(self) -> list[str]:
        """The distinct labels, sorted: the class index of a label is its position here."""
        found = {row.label for row in self.rows if row.label is not None}
        return sorted(found)


def _number(value: Any, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {what} must be a number of seconds, got {value!r}") from None


def _row(record: Mapping[str, Any], where: str) -> ManifestRow:
    missing = [key for key in ("video", "caption") if key not in record]
    if missing:
        raise ConfigError(f"{where}: missing column(s) {missing}; a manifest row needs {list(_COLUMNS[:4])}")
    label = record.get("label")
    extra = {str(k): str(v) for k, v in record.items() if k not in _COLUMNS and v is not None}
    try:
        return ManifestRow(
            str(record["video"]),
            _number(record.get("start"), "start", where),
            _number(record.get("end"), "end", where),
            str(record["caption"]),
            None if label in (None, "") else str(label),
            extra,
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _records(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    with path.open(newline="" if path.suffix == ".csv" else None, encoding="utf-8") as handle:
        if path.suffix == ".csv":
            for number, record in enumerate(csv.DictReader(handle), start=2):
                yield f"{path}:{number}", record
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{number}: not a JSON object ({err})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{number}: not a JSON object")
            yield f"{path}:{number}", record


def _check_suffix(path: Path) -> None:
    if path.suffix not in _SUFFIXES:
        raise ConfigError(f"{path}: a manifest is .jsonl or .csv, not {path.suffix or 'without suffix'}")


def _present(path: str | os.PathLike[str], what: str = "manifest") -> Path:
    """A file to read, there (a typed error naming it, not a FileNotFoundError, when it is not)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    return path


def _existing(path: str | os.PathLike[str]) -> Path:
    """A manifest to read: the right suffix, and there."""
    _check_suffix(Path(path))
    return _present(path)


def _resolve(root: Path, video: str) -> Path:
    """A row's video path: relative paths start from the manifest's folder."""
    path = Path(video)
    return path if path.is_absolute() else root / path


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Parse a JSONL or CSV manifest; relative video paths are taken from the manifest's folder."""
    path = _existing(path)
    rows = tuple(_row(record, where) for where, record in _records(path))
    if not rows:
        raise ConfigError(f"{path}: the manifest has no rows")
    return Manifest(rows, path.parent)


def manifest_videos(path: str | os.PathLike[str]) -> list[tuple[Path, str | None]]:
    """The distinct videos a manifest names, in order of first mention, each with its `video_id`
    column if the manifest has one; only the `video` column is required."""
    path = _existing(path)
    seen: dict[Path, str | None] = {}
    for where, record in _records(path):
        if not record.get("video"):
            raise ConfigError(f"{where}: the row names no video")
        video_id = record.get("video_id")
        seen.setdefault(_resolve(path.parent, str(record["video"])),
                        str(video_id) if video_id not in (None, "") else None)
    if not seen:
        raise ConfigError(f"{path}: the manifest has no rows")
    return list(seen.items())


def write_manifest(path: str | os.PathLike[str], rows: Sequence[ManifestRow]) -> None:
    """Write rows as JSONL or CSV (by suffix), atomically."""
    path = Path(path)
    _check_suffix(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            for row in rows:
                handle.write(json.dumps(row.to_record(), ensure_ascii=False) + "\n")
        else:
            extra = sorted({key for row in rows for key in row.extra})
            writer = csv.DictWriter(handle, fieldnames=[*_COLUMNS, *extra])
            writer.writeheader()
            for row in rows:
                writer.writerow(row.to_record())


# --- InternVid -----------------------------------------------------------------------------------


def parse_timestamp(text: str) -> float:
    """Seconds of "HH:MM:SS.mmm" (InternVid's form), "MM:SS(.f)" or plain seconds."""
    try:
        parts = [float(part) for part in str(text).strip().split(":")]
    except ValueError:
        raise ConfigError(f"not a timestamp: {text!r} (expected HH:MM:SS.mmm)") from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise ConfigError(f"not a timestamp: {text!r} (expected HH:MM:SS.mmm)")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


@dataclass(frozen=True)
class InternVidColumns:
    """Column names of InternVid's JSONL annotations (InternVid-10M-FLT and its siblings)."""

    video_id: str = "YoutubeID"
    start: str = "Start_timestamp"
    end: str = "End_timestamp"
    caption: str = "Caption"


def video_locator(
    pattern: str | None = None, table: Mapping[str, str] | None = None
) -> Callable[[str], str | None]:
    """Where a video id lies locally: looked up in `table`, else `pattern` with `{id}` filled in."""
    if pattern is None and table is None:
        raise ConfigError("InternVid: give a path pattern with {id} or a table from video id to file")
    if pattern is not None and "{id}" not in pattern:
        raise ConfigError(f"InternVid: the path pattern {pattern!r} has no {{id}} placeholder")

    def locate(video_id: str) -> str | None:
        if table is not None and video_id in table:
            return table[video_id]
        return pattern.format(id=video_id) if pattern is not None else None

    return locate


def read_video_table(path: str | os.PathLike[str]) -> dict[str, str]:
    """A video id → file table from a JSON object or a two-column CSV (id, path)."""
    path = _present(path, "video table")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object mapping video ids to files")
        return {str(k): str(v) for k, v in data.items()}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2 and row[0] != "id"}


def read_internvid(
    path: str | os.PathLike[str],
    locate: Callable[[str], str | None],
    columns: InternVidColumns | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Manifest:
    """InternVid annotations as a manifest. Clips whose video is not found under `root` (default:
    the annotation file's folder) are skipped with one warning: web collections are never complete."""
    path = _present(path, "annotation file")
    columns = columns or InternVidColumns()
    base = Path(root) if root is not None else path.parent
    rows: list[ManifestRow] = []
    absent = 0
    for where, record in _records(path):
        try:
            video_id = str(record[columns.video_id])
            start, end = parse_timestamp(record[columns.start]), parse_timestamp(record[columns.end])
            caption = str(record[columns.caption])
        except KeyError as err:
            raise ConfigError(f"{where}: InternVid row lacks column {err}") from None
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        local = locate(video_id)
        if local is None or not (base / local).is_file():
            absent += 1
            continue
        rows.append(ManifestRow(local, start, end, caption, extra={"video_id": video_id}))
    if absent:
        log.warning("%s: %d clip(s) skipped, their videos are not present locally", path, absent)
    if not rows:
        raise ConfigError(f"{path}: none of the annotated videos were found under {base}")
    return Manifest(tuple(rows), base)
