"""`vidsearch serve` as a real process (config file + environment + flags), `vidsearch search` against it."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tools.codegen import stale_files
from vidsearch.cli import app
from vidsearch.client import SearchClient

from ..runtime.models import Repository
from .conftest import Media

VIDSEARCH = [sys.executable, "-c", "from vidsearch.cli import app; app()"]


def _wait_for_start(process: subprocess.Popen[str], seconds: float) -> str:
    """The server's JSON start-up log message; fails with the log if it dies first."""
    assert process.stderr is not None
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        entry = json.loads(line)
        if entry["message"].startswith("vidsearch serving"):
            return str(entry["message"])
    pytest.fail(f"the server did not start: {''.join(seen)}")


def test_serve_reads_file_env_and_flags_and_search_prints_a_table(repository: Repository, media: Media,
                                                                  tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    bracketed = "holiday [red].mp4"  # a file name Rich would read as markup
    shutil.copyfile(media.root / "clip-0.mp4", odd / bracketed)
    config = tmp_path / "server.toml"
    config.write_text(f'port = 50999\nmetrics_port = 0\nindex = "{tmp_path / "index"}"\n'
                      f'allowed_roots = ["{media.root}", "{odd}"]\n[runtime]\nmodel_repository = "wrong"\n'
                      '[video]\nclip_length_s = 2.0\n')
    env = {**os.environ, "VIDSEARCH_RUNTIME__MODEL_REPOSITORY": str(repository.path),  # env beats the file
           "VIDSEARCH_LOG_LEVEL": "INFO", "VIDSEARCH_HTTP__PORT": "0"}
    command = [*VIDSEARCH, "serve", "--config", str(config), "--port", "0"]  # the flag beats the file
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        started = _wait_for_start(process, 60)
        address = started.split(" on ")[1].split(" ")[0]
        assert not address.endswith(":50999")
        page = httpx.get(started.split("the page and HTTP API on ")[1], timeout=10)
        assert "<title>vidsearch</title>" in page.text
        with SearchClient(address) as client:
            assert client.ingest(["clip-0.mp4", "clip-2.mp4"])[1].clips == 3
        arguments = ["search", "a red circle moving left", "--top-k", "3", "--server", address]
        result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        rows = [line for line in result.output.splitlines() if "clip-" in line and "│" in line]
        assert len(rows) == 3
        assert re.search(r"│ [024]\.00–[246]\.00 s │", result.output)
        assert "tiny-viclip, index snapshot-000001+2" in result.output
        with SearchClient(address) as client:
            assert client.ingest([str(odd / bracketed)])[0].video_id == bracketed
        query = "a red circle [/b] moving [red] left"  # a closing tag alone: Rich's MarkupError
        result = CliRunner().invoke(app, ["search", query, "--video-id", bracketed, "--server", address],
                                    env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert f"“{query}”" in result.output, "the query as typed"
        assert len([line for line in result.output.splitlines() if f"│ {bracketed} │" in line]) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_search_reports_an_unreachable_server() -> None:
    result = CliRunner().invoke(app, ["search", "anything", "--server", "127.0.0.1:1", "--timeout", "2"])
    assert result.exit_code == 1
    assert "error: UNAVAILABLE" in result.output


def test_serve_refuses_bad_settings_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "70000", "--index", str(tmp_path)])
    assert result.exit_code == 1
    assert "invalid settings: port: Input should be less than or equal to 65535" in result.output
    missing = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 1
    assert "nope.toml does not exist" in missing.output


def test_the_committed_stubs_match_a_fresh_generation() -> None:
    assert stale_files() == [], "run `python -m tools.codegen` after editing search.proto"
