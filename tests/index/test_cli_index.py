"""`vidsearch index build` and `vidsearch index stats`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus import MilvusClient
from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.index.milvus import LocalMilvus, MilvusClipIndex, MilvusTarget

from .helpers import write_shards

VIDSEARCH = Path(sys.executable).with_name("vidsearch")


def test_build_then_stats(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards")
    built = subprocess.run(
        [str(VIDSEARCH), "index", "build", "--from", str(tmp_path / "shards"), "--out", str(tmp_path / "ix")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert "120 clips, 20 videos, Flat" in built.stdout

    shown = subprocess.run(
        [str(VIDSEARCH), "index", "stats", str(tmp_path / "ix"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    assert stats["clips"] == 120
    assert stats["videos"] == 20
    assert stats["dim"] == 16
    assert stats["model"] == "viclip-b16"
    assert stats["model_checksum"] == "sha256:0123"
    assert stats["index_type"] == "Flat"
    assert stats["device"] == "cpu"
    assert stats["size_bytes"] > 120 * 16 * 4


def test_stats_table_and_factory_override(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards")
    runner = CliRunner()
    built = runner.invoke(
        app,
        [
            "index",
            "build",
            "--from",
            str(tmp_path / "shards"),
            "-o",
            str(tmp_path / "ix [v1]"),
            "--factory",
            "HNSW8,Flat",
        ],
    )
    assert built.exit_code == 0, built.output
    shown = runner.invoke(app, ["index", "stats", str(tmp_path / "ix [v1]")], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert "ix [v1]" in shown.stdout, "the title as typed, not read as Rich markup"
    assert "HNSW8,Flat" in shown.stdout
    assert "ef_search" in shown.stdout


def test_errors_are_reported_without_a_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["index", "stats", str(tmp_path)])
    assert missing.exit_code == 1
    assert "error:" in missing.stderr
    assert "not a vidsearch index directory" in missing.stderr
    assert "Traceback" not in missing.output

    (tmp_path / "empty").mkdir()
    empty = runner.invoke(
        app, ["index", "build", "--from", str(tmp_path / "empty"), "--out", str(tmp_path / "ix")]
    )
    assert empty.exit_code == 1
    assert "no .parquet embedding shards" in empty.stderr

    bad_gpu = runner.invoke(
        app,
        [
            "index",
            "build",
            "--from",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "ix"),
            "--gpu",
            "maybe",
        ],
    )
    assert bad_gpu.exit_code == 2
    assert "auto, never or require" in bad_gpu.output


@pytest.mark.slow
def test_build_a_milvus_collection_then_stats(tmp_path: Path, milvus_server: LocalMilvus) -> None:
    write_shards(tmp_path / "shards")
    MilvusClient(uri=milvus_server.uri).create_database("media")
    runner = CliRunner()
    build = ["index", "build", "--from", str(tmp_path / "shards"), "--backend", "milvus",
             "--milvus-uri", milvus_server.uri, "--collection", "cli_built", "--milvus-database", "media",
             "--milvus-index", "IVF_SQ8"]  # fmt: skip
    built = runner.invoke(app, build)
    assert built.exit_code == 0, built.output
    address = milvus_server.uri.replace("http://", "milvus://") + "/media/cli_built"
    assert f"built {address}: 120 clips, 20 videos, IVF_SQ8" in built.stdout
    assert not MilvusClient(uri=milvus_server.uri).has_collection("cli_built"), "not in the default database"

    again = runner.invoke(app, build)
    assert again.exit_code == 1
    assert "exists already" in again.stderr
    tuned = [*build, "--replace", "--milvus-partitions", "4", "--milvus-param", "nlist=16",
             "--milvus-search-param", "nprobe=4", "--milvus-replicas", "1"]  # fmt: skip
    rebuilt = runner.invoke(app, tuned)
    assert rebuilt.exit_code == 0, rebuilt.output

    shown = runner.invoke(app, ["index", "stats", address, "--json"])
    assert shown.exit_code == 0, shown.output
    stats = json.loads(shown.stdout)
    assert (stats["clips"], stats["videos"], stats["dim"]) == (120, 20, 16)
    assert (stats["model"], stats["model_checksum"]) == ("viclip-b16", "sha256:0123")
    assert stats["backend"].startswith("milvus ")
    assert (stats["params"]["nlist"], stats["params"]["nprobe"]) == (16, 4), "recorded with the collection"
    assert stats["params"]["replicas"] == 1

    with MilvusClipIndex.open(MilvusTarget.parse(address), expect_model="viclip-b16") as index:
        assert index.get(["c7"])["c7"].uri == "file:///v1.mp4"
        assert len(index._client.list_partitions("cli_built")) == 4  # the video ids hash into 4
        assert index._client.describe_index("cli_built", "vector")["nlist"] == "16", "what Milvus built"
        index.drop()

    no_collection = runner.invoke(app, [*build[:4], "--backend", "milvus"])
    assert no_collection.exit_code == 2
    assert "--milvus-uri" in no_collection.output
    misspelt = runner.invoke(app, [*build, "--replace", "--milvus-param", "nlists=16"])
    assert misspelt.exit_code == 1
    assert "IVF_SQ8 has no build parameter 'nlists': it takes nlist" in misspelt.stderr
    malformed = runner.invoke(app, [*build, "--replace", "--milvus-search-param", "nprobe"])
    assert malformed.exit_code == 2
    assert "--milvus-search-param takes KEY=VALUE, got 'nprobe'" in malformed.output
