import json
from pathlib import Path

import pytest

from vidsearch.errors import ConfigError
from vidsearch.video.manifest import (
    ManifestRow,
    parse_timestamp,
    read_internvid,
    read_manifest,
    read_video_table,
    video_locator,
    write_manifest,
)

ROWS = [
    ManifestRow("videos/a.mp4", 0.0, 2.5, "a red circle moves up", "red", {"colour": "red"}),
    ManifestRow("/abs/b.mp4", None, None, 'caption, with "quotes"', None, {}),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_round_trip_and_relative_paths(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    write_manifest(path, ROWS)
    manifest = read_manifest(path)
    assert manifest.rows[0] == ROWS[0]
    assert manifest.rows[1].video == "/abs/b.mp4"
    assert manifest.rows[1].caption == ROWS[1].caption
    assert (manifest.rows[1].start_s, manifest.rows[1].end_s, manifest.rows[1].label) == (None, None, None)
    assert manifest.path_of(manifest.rows[0]) == tmp_path / "videos/a.mp4"
    assert manifest.path_of(manifest.rows[1]) == Path("/abs/b.mp4")
    assert manifest.labels() == ["red"]


def test_unknown_columns_are_kept_as_extra(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"video": "v.mp4", "caption": "x", "start": 1, "end": 2, "speed": 3}) + "\n\n")
    (row,) = read_manifest(path).rows
    assert row.extra == {"speed": "3"}
    assert (row.start_s, row.end_s) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"caption": "x"}', "missing column"),
        ('{"video": "v.mp4", "caption": "x", "start": 3, "end": 2}', "start < end"),
        ('{"video": "v.mp4", "caption": "x", "start": 1}', "both start and end"),
        ('{"video": "v.mp4", "caption": "x", "start": "soon", "end": 2}', "number of seconds"),
        ("[1, 2]", "not a JSON object"),
        ("{oops", "not a JSON object"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        read_manifest(path)
    assert f"{path}:1" in str(info.value)


def test_suffix_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.jsonl or \.csv"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ConfigError, match="no such manifest"):
        read_manifest(tmp_path / "absent.jsonl")
    (tmp_path / "empty.csv").write_text("video,caption\n")
    with pytest.raises(ConfigError, match="no rows"):
        read_manifest(tmp_path / "empty.csv")


def test_timestamps() -> None:
    assert parse_timestamp("00:07:33.689") == pytest.approx(453.689)
    assert parse_timestamp("01:02") == 62.0
    assert parse_timestamp("12.5") == 12.5
    with pytest.raises(ConfigError, match="not a timestamp"):
        parse_timestamp("1:2:3:4")
    with pytest.raises(ConfigError, match="not a timestamp"):
        parse_timestamp("ab:cd")


def _internvid(tmp_path: Path) -> Path:
    rows = [
        {
            "YoutubeID": "abc",
            "Start_timestamp": "00:00:01.500",
            "End_timestamp": "00:00:04.000",
            "Caption": "a dog runs",
            "UMT_Score": 0.4,
        },
        {
            "YoutubeID": "gone",
            "Start_timestamp": "00:00:00.000",
            "End_timestamp": "00:00:02.000",
            "Caption": "missing video",
        },
        {
            "YoutubeID": "xyz",
            "Start_timestamp": "00:01:00.000",
            "End_timestamp": "00:01:05.250",
            "Caption": "a cat sleeps",
        },
    ]
    path = tmp_path / "InternVid-10M-FLT.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "abc.mp4").write_bytes(b"")
    (tmp_path / "elsewhere.mp4").write_bytes(b"")
    return path


def test_internvid_rows_map_ids_to_local_files_and_skip_absent_ones(tmp_path: Path) -> None:
    annotations = _internvid(tmp_path)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"xyz": "elsewhere.mp4"}))
    manifest = read_internvid(annotations, video_locator("videos/{id}.mp4", read_video_table(table)))
    assert [r.caption for r in manifest.rows] == ["a dog runs", "a cat sleeps"]
    first, second = manifest.rows
    assert (first.video, first.start_s, first.end_s) == ("videos/abc.mp4", 1.5, 4.0)
    assert (second.video, second.start_s, second.end_s) == ("elsewhere.mp4", 60.0, 65.25)
    assert first.extra == {"video_id": "abc"}
    assert manifest.path_of(first) == tmp_path / "videos/abc.mp4"


def test_internvid_without_any_local_video_or_locator_is_an_error(tmp_path: Path) -> None:
    annotations = _internvid(tmp_path)
    with pytest.raises(ConfigError, match="none of the annotated videos"):
        read_internvid(annotations, video_locator("nowhere/{id}.mp4"))
    with pytest.raises(ConfigError, match=r"\{id\}"):
        video_locator("videos/x.mp4")
    with pytest.raises(ConfigError, match="pattern"):
        video_locator()
