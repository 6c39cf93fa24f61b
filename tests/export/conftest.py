"""Fixtures of the export tests: tiny checkpoints, an exported repository, a real Triton server.

The models are tiny (2 layers, 64 wide, 32² frames) so that every export runs in seconds; the
Triton server is the real `tritonserver` of `.venv-triton` (`make triton-env`), started once per
session on 127.0.0.1 and always stopped.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tools.triton_server import TritonServer, find_triton
from vidsearch.cli import app
from vidsearch.export import ExportConfig
from vidsearch.models import create_model
from vidsearch.models.viclip import ViCLIP
from vidsearch.models.videomae import VideoMAEv2

from ..tiny_configs import TINY_VICLIP, TINY_VIDEOMAE

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_ENV = Path(os.environ.get("VIDSEARCH_TRITON_ENV", REPO_ROOT / ".venv-triton"))
MAX_BATCH = 4



@dataclass(frozen=True)
class TinyModel:
    """A preset JSON file, a checkpoint of it, and the model the checkpoint holds."""

    preset: Path
    checkpoint: Path
    model: torch.nn.Module


def _tiny(folder: Path, name: str, family: str, config: dict[str, object], seed: int) -> TinyModel:
    folder.mkdir(parents=True, exist_ok=True)
    preset = folder / f"{name}.json"
    preset.write_text(json.dumps({"family": family, "config": config}))
    torch.manual_seed(seed)
    model = create_model(preset).eval()
    checkpoint = folder / f"{name}.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return TinyModel(preset, checkpoint, model)


@pytest.fixture(scope="session")
def tiny_viclip(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    tiny = _tiny(tmp_path_factory.mktemp("viclip"), "tiny-viclip", "viclip", TINY_VICLIP, seed=0)
    assert isinstance(tiny.model, ViCLIP)
    return tiny


@pytest.fixture(scope="session")
def tiny_viclip_other(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Another tiny ViCLIP: a different architecture (embedding dimension 16)."""
    config = {**TINY_VICLIP, "embed_dim": 16}
    return _tiny(tmp_path_factory.mktemp("viclip-other"), "tiny-viclip-16", "viclip", config, seed=1)


@pytest.fixture(scope="session")
def tiny_videomae(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    tiny = _tiny(tmp_path_factory.mktemp("videomae"), "tiny-videomae", "videomae_v2", TINY_VIDEOMAE, seed=2)
    assert isinstance(tiny.model, VideoMAEv2)
    return tiny


def export_config(tiny: TinyModel, out: Path, **changes: Any) -> ExportConfig:
    """The export of `tiny` into `out`, with any setting changed."""
    return ExportConfig(str(tiny.preset), tiny.checkpoint, out, **changes)


def run_cli(*args: str) -> tuple[int, str]:
    """Run `vidsearch` in-process; (exit code, stdout + stderr)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def cpu_repository(tiny_viclip: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `--target cpu` repository of the tiny ViCLIP, written through the command line."""
    out = tmp_path_factory.mktemp("repositories") / "cpu"
    code, output = run_cli("export", "--model", str(tiny_viclip.preset), "--checkpoint",
                           str(tiny_viclip.checkpoint), "--out", str(out), "--target", "cpu",
                           "--max-batch", str(MAX_BATCH), "--cpu-threads", "1")
    assert code == 0, output
    return out


@pytest.fixture(scope="session")
def triton_server(cpu_repository: Path) -> Iterator[TritonServer]:
    if not (TRITON_ENV / "bin" / "python").is_file():
        pytest.skip(f"no Triton server environment at {TRITON_ENV}: run `make triton-env`")
    server = TritonServer(find_triton(TRITON_ENV), cpu_repository, startup_timeout_s=120)
    with server:
        yield server
