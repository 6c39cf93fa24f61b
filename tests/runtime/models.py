"""Tiny exported models and short real H.264 videos, shared by the runtime and serving tests.

One repository per test session (built on first use under pytest's base temp directory): a tiny
ViCLIP (32-d embeddings, 32² frames) and a tiny VideoMAE V2 classifier (7 classes), exported by
`vidsearch.export` exactly as a user's models would be.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from vidsearch.export import ExportConfig, export_model
from vidsearch.models import create_model, load_checkpoint
from vidsearch.models.viclip import ViCLIP
from vidsearch.models.videomae import VideoMAEv2
from vidsearch.training.synthetic import SynthSpec, plan, scene_frames, write_mp4

from ..tiny_configs import TINY_VICLIP, TINY_VIDEOMAE

MAX_BATCH = 4
SCENE_S = 2.0  # each synthetic scene: 20 frames at 10 fps


@dataclass(frozen=True)
class Repository:
    path: Path
    viclip: ViCLIP  # the PyTorch models the repository was exported from
    videomae: VideoMAEv2


def _model(folder: Path, name: str, family: str, config: Mapping[str, object],
           seed: int) -> tuple[Path, Path]:
    preset = folder / f"{name}.json"
    preset.write_text(json.dumps({"family": family, "config": dict(config)}))
    torch.manual_seed(seed)
    checkpoint = folder / f"{name}.pth"
    torch.save({"model": create_model(preset).state_dict()}, checkpoint)
    return preset, checkpoint


def load(folder: Path, name: str) -> torch.nn.Module:
    return load_checkpoint(folder / f"{name}.pth", folder / f"{name}.json").eval()


def shared_repository(factory: pytest.TempPathFactory) -> Repository:
    """The session's repository, exported once whichever test folder asks first."""
    folder = factory.getbasetemp() / "tiny-models"
    repository = folder / "repository"
    if not (repository / "videomae_v2").is_dir():
        folder.mkdir(exist_ok=True)
        for name, family, config, seed in (("tiny-viclip", "viclip", TINY_VICLIP, 0),
                                           ("tiny-videomae", "videomae_v2", TINY_VIDEOMAE, 1)):
            preset, checkpoint = _model(folder, name, family, config, seed)
            export = ExportConfig(str(preset), checkpoint, repository, max_batch=MAX_BATCH, cpu_threads=1)
            export_model(export)
    viclip, videomae = load(folder, "tiny-viclip"), load(folder, "tiny-videomae")
    assert isinstance(viclip, ViCLIP)
    assert isinstance(videomae, VideoMAEv2)
    return Repository(repository, viclip, videomae)


def write_videos(folder: Path, count: int, scenes: int = 3, seed: int = 3) -> list[Path]:
    """`count` H.264 videos of `scenes` synthetic scenes (SCENE_S seconds each), 64² pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = SynthSpec(n=max(2, count * scenes), seed=seed, size=64)
    planned = plan(spec)
    paths = []
    for number in range(count):
        frames = np.concatenate([scene_frames(spec, planned[number * scenes + k]) for k in range(scenes)])
        path = folder / f"clip-{number}.mp4"
        write_mp4(path, frames, spec.fps, spec.crf)
        paths.append(path)
    return paths


def shared_demo_repository(factory: pytest.TempPathFactory) -> Path:
    """The shipped demo ViCLIP exported as `vidsearch demo` exports it, once per session."""
    from rich.console import Console

    from vidsearch.demo.run import export_demo_model
    from vidsearch.training.artifact import demo_model_dir

    folder = factory.getbasetemp() / "demo-model"
    repository = folder / "repository"
    if not repository.is_dir():
        folder.mkdir(exist_ok=True)
        export_demo_model(demo_model_dir(), repository, Console(quiet=True))
    return repository
