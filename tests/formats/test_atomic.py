"""The one atomic-write helper: a crash leaves the old file or the new one, and its leftovers are known."""

from pathlib import Path

import pytest

from vidsearch.formats.atomic import atomic_path, is_leftover, write_atomic


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")

    def interrupted_write() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_temporary_file_of_an_unfinished_write_is_recognised(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "part-000001.parquet") as tmp:
        tmp.write_bytes(b"partial")
        assert is_leftover(tmp)  # what a process killed here leaves behind
    assert not is_leftover(tmp_path / "part-000001.parquet")
    assert not is_leftover(tmp_path / ".hidden")
