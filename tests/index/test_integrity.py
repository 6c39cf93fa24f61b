"""Damaged index data is never served: each of the 18 kinds of corruption of issue 18 (flipped bytes,
truncation, wrong counts, dangling pointers, missing files, in FAISS, SQLite, manifest, CURRENT and
Parquet) is refused with an IndexFormatError naming the damaged file; none is silently accepted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.errors import IndexFormatError
from vidsearch.formats.checksum import sha256_file
from vidsearch.index import FaissClipIndex, OpenOptions, persistence
from vidsearch.index.build import build_from_parquet
from vidsearch.index.changelog import segments
from vidsearch.index.parquet import ShardRows, shard_table, write_shard
from vidsearch.index.persistence import CURRENT, INDEX_FILE, MANIFEST, METADATA_FILE, current_snapshot

from .helpers import build, clustered, make_records


def flip(path: Path, count: int = 64) -> None:
    """Invert `count` bytes in the middle of a file (its size stays the same)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_manifest(snapshot: Path, change: Callable[[dict], None], *, redigest: bool = False) -> None:
    """Change the manifest (and, with `redigest`, record the files' current digests and sizes)."""
    manifest = json.loads((snapshot / MANIFEST).read_text())
    change(manifest)
    if redigest:
        for name, entry in manifest["files"].items():
            entry.update(bytes=(snapshot / name).stat().st_size, sha256=sha256_file(snapshot / name))
    (snapshot / MANIFEST).write_text(json.dumps(manifest))


def drop_one_row(snapshot: Path) -> None:
    """A consistent-looking snapshot whose SQLite lost a row FAISS still has (digests and count fixed)."""
    with sqlite3.connect(snapshot / METADATA_FILE) as conn:
        conn.execute("DELETE FROM clips WHERE id = (SELECT max(id) FROM clips)")
    edit_manifest(snapshot, lambda m: m.update(count=m["count"] - 1), redigest=True)


def set_field(key: str, value: object) -> Callable[[Path], None]:
    return lambda snapshot: edit_manifest(snapshot, lambda m: m.update({key: value}))


def set_size(snapshot: Path) -> None:
    def grow(manifest: dict) -> None:
        manifest["files"][INDEX_FILE]["bytes"] += 8

    edit_manifest(snapshot, grow)


# (kind, damage done to the live snapshot, the file the error must name)
SNAPSHOT_DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("faiss flipped bytes", lambda s: flip(s / INDEX_FILE), INDEX_FILE),
    ("faiss truncated", lambda s: truncate(s / INDEX_FILE), INDEX_FILE),
    ("faiss missing", lambda s: (s / INDEX_FILE).unlink(), INDEX_FILE),
    ("sqlite flipped bytes", lambda s: flip(s / METADATA_FILE), METADATA_FILE),
    ("sqlite truncated", lambda s: truncate(s / METADATA_FILE), METADATA_FILE),
    ("sqlite missing", lambda s: (s / METADATA_FILE).unlink(), METADATA_FILE),
    ("manifest flipped bytes", lambda s: flip(s / MANIFEST, 8), MANIFEST),
    ("manifest truncated", lambda s: truncate(s / MANIFEST), MANIFEST),
    ("manifest missing", lambda s: (s / MANIFEST).unlink(), MANIFEST),
    ("manifest wrong count", set_field("count", 41), MANIFEST),
    ("manifest wrong file size", set_size, INDEX_FILE),
    ("manifest of another format version", set_field("format_version", 1), MANIFEST),
    ("faiss and sqlite counts disagree", drop_one_row, INDEX_FILE),
]

# damage to the directory's pointer: (kind, damage done to the directory, the file the error must name)
POINTER_DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("CURRENT dangling", lambda d: (d / CURRENT).write_text("snapshot-000099\n"), CURRENT),
    ("CURRENT garbage", lambda d: (d / CURRENT).write_bytes(b"\xff\xfe\x00garbage"), CURRENT),
    ("CURRENT missing", lambda d: (d / CURRENT).unlink(), CURRENT),
]


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ix"
    with build(make_records(40), clustered(40, 16, seed=1)) as index:
        index.save(directory)
    return directory


@pytest.mark.parametrize(("kind", "damage", "named"), SNAPSHOT_DAMAGE, ids=[k for k, _, _ in SNAPSHOT_DAMAGE])
def test_a_damaged_snapshot_is_refused_naming_the_file(
    index_dir: Path, kind: str, damage: Callable[[Path], None], named: str
) -> None:
    damage(current_snapshot(index_dir))
    with pytest.raises(IndexFormatError, match=named):
        FaissClipIndex.open(index_dir)
    with pytest.raises(IndexFormatError, match=named):
        FaissClipIndex.open(index_dir, OpenOptions(read_only=True))


@pytest.mark.parametrize(("kind", "damage", "named"), POINTER_DAMAGE, ids=[k for k, _, _ in POINTER_DAMAGE])
def test_a_damaged_pointer_is_refused_naming_it(
    index_dir: Path, kind: str, damage: Callable[[Path], None], named: str
) -> None:
    damage(index_dir)
    with pytest.raises(IndexFormatError, match=named if kind != "CURRENT missing" else f"no {CURRENT}"):
        FaissClipIndex.open(index_dir)


def shard_rows(count: int, dim: int) -> ShardRows:
    return ShardRows(
        clip_ids=[f"c{i}" for i in range(count)],
        video_ids=[f"v{i // 10}" for i in range(count)],
        uris=[f"file:///v{i // 10}.mp4" for i in range(count)],
        start_s=np.arange(count, dtype=np.float64),
        end_s=np.arange(count, dtype=np.float64) + 1.0,
        models=["m"] * count,
        vectors=clustered(count, dim, seed=3),
    )


PARQUET_DAMAGE = [("parquet flipped bytes", flip), ("parquet truncated", truncate)]


@pytest.mark.parametrize(("kind", "damage"), PARQUET_DAMAGE)
def test_a_damaged_parquet_shard_fails_the_build_naming_it(
    tmp_path: Path, kind: str, damage: Callable[[Path], None]
) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "part-000000.parquet", shard_table(shard_rows(300, 16)))
    write_shard(shards / "part-000001.parquet", shard_table(shard_rows(300, 16)))
    damage(shards / "part-000001.parquet")
    with pytest.raises(IndexFormatError, match=r"part-000001\.parquet"):
        build_from_parquet(shards, tmp_path / "ix")
    assert not (tmp_path / "ix" / CURRENT).exists(), "nothing was built"


def test_a_shard_without_its_digest_is_still_checked_page_by_page(tmp_path: Path) -> None:
    """Shards written by other tools carry no sidecar: the page CRCs still catch flipped data."""
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "part-000000.parquet", shard_table(shard_rows(2000, 64)))
    (shards / "part-000000.parquet.sha256").unlink()
    flip(shards / "part-000000.parquet", 16)
    with pytest.raises(IndexFormatError, match=r"part-000000\.parquet"):
        build_from_parquet(shards, tmp_path / "ix")


def test_a_damaged_change_record_is_refused_but_a_torn_last_one_is_dropped(index_dir: Path) -> None:
    records, vectors = make_records(43), clustered(43, 16, seed=2)
    with FaissClipIndex.open(index_dir) as index:
        index.delete_videos(["v0"])
        index.upsert(records[40:42], vectors[40:42])
        index.upsert(records[42:], vectors[42:])
    ((_, log),) = segments(index_dir, 0)
    data = log.read_bytes()
    log.write_bytes(data[:-5])  # the last write died half-way: it was never acknowledged
    with FaissClipIndex.open(index_dir) as index:
        assert len(index) == 30 + 2, "the torn upsert of c42 is dropped, the two changes before it kept"
        assert index.version.endswith("+2")
    damaged = bytearray(log.read_bytes())
    damaged[20] ^= 0xFF  # inside the first record, followed by intact ones: damage, not a torn write
    log.write_bytes(bytes(damaged))
    with pytest.raises(IndexFormatError, match=log.name):
        FaissClipIndex.open(index_dir)


def test_large_snapshots_are_checked_on_demand_by_index_verify(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above VERIFY_ON_OPEN_MAX_BYTES opening checks sizes and counts only; `index verify` reads all."""
    runner = CliRunner()
    intact = runner.invoke(app, ["index", "verify", str(index_dir)])
    assert intact.exit_code == 0, intact.output
    assert "intact, 40 clips" in intact.output
    snapshot = current_snapshot(index_dir)
    flip(snapshot / METADATA_FILE, 16)
    monkeypatch.setattr(persistence, "VERIFY_ON_OPEN_MAX_BYTES", 0)
    with FaissClipIndex.open(index_dir, OpenOptions(read_only=True)) as fast:
        assert len(fast) == 40  # the flipped page is not one the counts read
    damaged = runner.invoke(app, ["index", "verify", str(index_dir)])
    assert damaged.exit_code == 1
    assert f"{METADATA_FILE}: damaged" in damaged.output
