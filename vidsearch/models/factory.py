"""Model families and presets by name.

A preset is a JSON file (`presets/<name>.json`: family, description, config) mapped onto the family's
config dataclass; a user's own preset is a JSON file of the same shape, passed by path. A family
bundles what the checkpoint loader needs to know about one architecture.
"""

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vidsearch.errors import ConfigError
from vidsearch.models import internvideo2, viclip, videomae

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class ModelFamily:
    """One architecture: its config type, model class, and how foreign checkpoints map onto it."""

    name: str
    config_cls: type[Any]
    model_cls: Callable[[Any], nn.Module]
    filter_fn: Callable[[Mapping[str, Tensor]], StateDict]
    infer_fields: Callable[[Mapping[str, Tensor]], dict[str, Any]]
    heads_of: Mapping[str, str]  # width field → its head-count field, which no shape determines
    # Fields that name the model's size: a checkpoint must agree with an explicitly chosen preset on
    # them (its head counts follow no width rule that could be inferred).
    size_fields: tuple[str, ...] = ()


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            "viclip",
            viclip.ViCLIPConfig,
            viclip.ViCLIP,
            viclip.checkpoint_filter_fn,
            viclip.infer_fields,
            {"vision_width": "vision_heads", "text_width": "text_heads"},
        ),
        ModelFamily(
            "videomae_v2",
            videomae.VideoMAEv2Config,
            videomae.VideoMAEv2,
            functools.partial(videomae.checkpoint_filter_fn, pretrain=False),
            videomae.infer_fields,
            {"width": "heads"},
        ),
        ModelFamily(
            "videomae_v2_pretrain",
            videomae.VideoMAEv2Config,
            videomae.VideoMAEv2Pretrain,
            functools.partial(videomae.checkpoint_filter_fn, pretrain=True),
            videomae.infer_fields,
            {"width": "heads", "decoder_width": "decoder_heads"},
        ),
        ModelFamily(
            "internvideo2",
            internvideo2.InternVideo2Config,
            internvideo2.InternVideo2,
            internvideo2.checkpoint_filter_fn,
            internvideo2.infer_fields,
            {},
            ("vision_width", "vision_layers", "text_width"),
        ),
    )
}


@dataclass(frozen=True)
class Preset:
    name: str
    family: ModelFamily
    config: Any
    description: str = ""


def _preset_files() -> dict[str, Any]:
    folder = resources.files("vidsearch.models") / "presets"
    return {f.name.removesuffix(".json"): f for f in folder.iterdir() if f.name.endswith(".json")}


def list_presets(family: str | None = None) -> list[str]:
    """Names of the shipped presets, optionally of one family."""
    names = sorted(_preset_files())
    if family is None:
        return names
    return [name for name in names if get_preset(name).family.name == family]


@functools.cache
def _load_shipped(name: str) -> Preset:
    return _parse_preset(name, _preset_files()[name].read_text())


def get_preset(name_or_path: str | Path) -> Preset:
    """A shipped preset by name, or a user's preset JSON file by path."""
    if str(name_or_path) in _preset_files():
        return _load_shipped(str(name_or_path))
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return _parse_preset(path.stem, path.read_text())
    raise ConfigError(f"unknown preset {str(name_or_path)!r}; shipped presets: {', '.join(list_presets())}")


def _parse_preset(name: str, text: str) -> Preset:
    try:
        data = json.loads(text)
        family = FAMILIES[data["family"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"preset {name!r} is not a JSON object with a known 'family': {err}") from err
    return Preset(name, family, make_config(family, data.get("config", {})), data.get("description", ""))


def make_config(family: ModelFamily, values: Mapping[str, Any], base: Any = None) -> Any:
    """`base` (or the family's defaults) with `values` set; an unknown field is a ConfigError."""
    known = {f.name for f in fields(family.config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {family.name} config fields {unknown}; known: {sorted(known)}")
    if base is None:
        return family.config_cls(**values)
    return replace(base, **values)


def create_model(preset: str | Path, **overrides: Any) -> nn.Module:
    """A freshly initialised model from a preset, with any config field overridden."""
    spec = get_preset(preset)
    return spec.family.model_cls(make_config(spec.family, overrides, spec.config))
