"""One loader for every checkpoint vidsearch accepts.

Reads the official releases unchanged (`{'model': sd}`, `{'module': sd}`, a bare state dict,
`.safetensors`), never unpickles anything but tensors (`torch.load(weights_only=True)`), lets the
family's filter map foreign names, infers the architecture from tensor shapes, and loads strictly:
a checkpoint that does not fit fails with the keys and the configuration it inferred.
"""

import logging
import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from vidsearch.errors import CheckpointError
from vidsearch.models import internvideo2, viclip, videomae
from vidsearch.models.factory import (
    FAMILIES,
    ModelFamily,
    Preset,
    StateDict,
    get_preset,
    list_presets,
    make_config,
)

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "module", "state_dict")
_LISTED_KEYS = 8


def read_state_dict(path: str | Path) -> StateDict:
    """The tensors of a checkpoint file, unwrapped from the training-script containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint (bad pickle)") from err
        raise CheckpointError(
            f"{path}: pickles a {found.group(1)}; vidsearch loads nothing but tensors "
            "(torch.load weights_only=True). Re-save the state dict alone."
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({err})") from err
    return _unwrap(loaded, path)


def _unwrap(loaded: Any, path: Path) -> StateDict:
    if isinstance(loaded, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors)")
    not_tensors = sorted(str(k) for k, v in loaded.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {_listing(not_tensors)}")
    return {str(k): v for k, v in loaded.items()}


def detect_family(state_dict: StateDict) -> ModelFamily:
    """Which architecture a (raw) state dict belongs to, by telltale keys."""
    unwrapped = viclip.checkpoint_filter_fn(state_dict)
    if internvideo2.is_internvideo2_checkpoint(unwrapped):
        return FAMILIES["internvideo2"]
    if viclip.is_viclip_checkpoint(unwrapped):
        return FAMILIES["viclip"]
    if videomae.is_pretrain_checkpoint(state_dict):
        return FAMILIES["videomae_v2_pretrain"]
    return FAMILIES["videomae_v2"]


def _closest_preset(family: ModelFamily, inferred: dict[str, Any]) -> Any:
    """The shipped preset the checkpoint differs least from, for what shapes cannot tell (heads)."""
    presets = [get_preset(name).config for name in list_presets(family.name)]
    if not presets:
        return family.config_cls()
    return min(presets, key=lambda preset: sum(getattr(preset, k) != v for k, v in inferred.items()))


def resolve_config(
    family: ModelFamily, state_dict: StateDict, base: Any | None, overrides: dict[str, Any]
) -> Any:
    """base (or the closest preset) ← what the shapes say ← the caller's overrides. A width that
    differs from the base's takes width / 64 heads, the convention of every released model."""
    inferred = family.infer_fields(state_dict)
    if base is not None:
        wrong = [f"{name} {inferred[name]} (preset {getattr(base, name)})"
                 for name in family.size_fields if inferred[name] != getattr(base, name)]
        if wrong:
            raise CheckpointError(f"the checkpoint is another {family.name} size than the preset: "
                                  + ", ".join(wrong))
    base = base if base is not None else _closest_preset(family, inferred)
    values = {**asdict(base), **inferred}
    for width, heads in family.heads_of.items():
        if values[width] != getattr(base, width):
            values[heads] = max(values[width] // 64, 1)
    return make_config(family, {**values, **overrides})


def load_checkpoint(path: str | Path, preset: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build the model a checkpoint holds and load it strictly; returned in eval mode.

    `preset` names the family and the fields shapes cannot determine (by default: the closest
    shipped preset of the detected family); `overrides` set any config field last. For VideoMAE V2,
    `num_classes=0` asks for features: a stored classification head is dropped with a warning.
    """
    raw = read_state_dict(path)
    chosen: Preset | None = get_preset(preset) if preset is not None else None
    family = chosen.family if chosen else detect_family(raw)
    state_dict = family.filter_fn(raw)
    config = resolve_config(family, state_dict, chosen.config if chosen else None, overrides)
    if getattr(config, "num_classes", None) == 0 and "head.weight" in state_dict:
        classes = len(state_dict["head.weight"])
        log.warning("%s: dropping its %d-class head, features were asked for", path, classes)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    model = family.model_cls(config)
    _check_fits(model, state_dict, f"{path} ({family.name}, inferred {config})")
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def _check_fits(model: nn.Module, state_dict: StateDict, what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "wrong shapes": mis_shaped}
    problems = [f"{label} {_listing(keys)}" for label, keys in found.items() if keys]
    if problems:
        raise CheckpointError(f"checkpoint does not fit {what}: " + "; ".join(problems))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED_KEYS])
    more = len(items) - _LISTED_KEYS
    return f"[{shown}{f', … {more} more' if more > 0 else ''}] ({len(items)})"
