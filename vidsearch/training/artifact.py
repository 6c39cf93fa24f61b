"""A trained model as a self-describing folder: `model.safetensors` and `config.json`.

`config.json` carries everything needed to rebuild and use the model from the folder alone: the
family and every config field, the model preset it started from (for `load_checkpoint`), the
preprocessing spec and its digest, the tokenizer, the weights' dtype and SHA-256, and how it was
trained (recipe, command, metrics). The shipped demo model is such a folder
(`vidsearch/training/demo_model/`).
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from vidsearch.errors import CheckpointError
from vidsearch.formats.atomic import atomic_path, write_atomic
from vidsearch.models import FAMILIES, load_checkpoint
from vidsearch.models.factory import make_config
from vidsearch.video import Preprocess

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module
    preprocess: Preprocess
    config: Mapping[str, Any]  # the parsed config.json


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model_folder(
    folder: Path,
    model: nn.Module,
    family: str,
    preset: str,
    preprocess: Preprocess,
    dtype: torch.dtype = torch.float32,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write the folder (weights first, config last, each atomically) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    tensors = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        tmp.chmod(0o644)  # safetensors writes 0600; a model folder is meant to be shared
    config = {
        "format_version": FORMAT_VERSION,
        "family": family,
        "preset": preset,
        "config": asdict(model.config),  # type: ignore[call-overload]
        "preprocess": preprocess.to_dict(),
        "preprocess_digest": preprocess.digest(),
        "weights": {
            "file": WEIGHTS,
            "dtype": str(dtype).removeprefix("torch."),
            "sha256": _sha256(weights),
            "bytes": weights.stat().st_size,
        },
        "training": dict(training or {}),
    }
    if family == "viclip":
        config["tokenizer"] = {
            "kind": "openai-clip-bpe",
            "vocab_size": 49408,
            "context_length": config["config"]["context_length"],
        }
    write_atomic(folder / CONFIG, json.dumps(config, indent=2) + "\n")
    return folder


def update_training(folder: Path, training: Mapping[str, Any]) -> None:
    """Replace the `training` section of a folder's config (e.g. to add metrics), atomically."""
    config = read_folder_config(folder)
    config["training"] = dict(training)
    write_atomic(folder / CONFIG, json.dumps(config, indent=2) + "\n")


def read_folder_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a trained-model folder (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if config.get("format_version") != FORMAT_VERSION or config.get("family") not in FAMILIES:
        raise CheckpointError(
            f"{path}: unknown format {config.get('format_version')} or family {config.get('family')!r}"
        )
    return dict(config)


def load_model_folder(folder: str | os.PathLike[str], verify: bool = True) -> TrainedModel:
    """Rebuild a model saved by `save_model_folder` (float32, eval mode), checking its weights' hash."""
    folder = Path(folder)
    config = read_folder_config(folder)
    weights = folder / config["weights"]["file"]
    if verify and _sha256(weights) != config["weights"]["sha256"]:
        raise CheckpointError(
            f"{weights}: SHA-256 differs from {CONFIG}; the weights were changed or damaged"
        )
    family = FAMILIES[config["family"]]
    fields = dict(config["config"])
    make_config(family, fields)  # validates the stored fields before loading
    model = load_checkpoint(weights, **fields)
    return TrainedModel(model.float(), Preprocess.from_dict(config["preprocess"]), config)


def demo_model_dir() -> Path:
    """The folder of the shipped demo ViCLIP (trained on the synthetic moving-shapes set)."""
    return Path(str(resources.files("vidsearch.training") / "demo_model"))
