"""Training recipes: a JSON preset (`presets/<name>.json`, or a user's file) parsed once into typed
configuration, with the command line's overrides applied by dotted key (`loop.steps=100`).

A recipe names its task (`viclip`, `videomae-pretrain`, `videomae-finetune`), the model preset and
any field overrides, an optional checkpoint to start from, the preprocessing spec, the data, the loop
and optimiser settings, and an `objective` section that the task's module parses itself. The parsed
recipe, turned back into a plain dict, is stored in every checkpoint, so a resume can check it runs
the same recipe.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from vidsearch.errors import ConfigError
from vidsearch.training.distributed import DeviceChoice
from vidsearch.training.loop import LoopConfig
from vidsearch.training.optim import OptimConfig

Task = Literal["viclip", "videomae-pretrain", "videomae-finetune"]
Positives = Literal["pair", "caption", "label"]


T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from. Relative manifest paths are taken from the working directory.

    `synthetic` (fields of `SynthSpec`) generates the moving-shapes set into `<out>/data` when no
    `train` manifest is given. `cache` decodes every clip once into a tensor file under `<out>/cache`
    (through `vidsearch.video`, so the tensors are those serving computes). `positives` says which
    items count as matches in the contrastive loss: the pair only, equal captions, or equal labels.
    """

    train: str | None = None
    test: str | None = None
    synthetic: Mapping[str, Any] | None = None
    cache: bool = False
    positives: Positives = "caption"
    workers: int = 0  # processes decoding video (cache building, training without cache, evaluation)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"data.workers must not be negative, got {self.workers}")
        if self.positives not in get_args(Positives):
            raise ConfigError(f"data.positives must be one of {get_args(Positives)}, got {self.positives!r}")


@dataclass(frozen=True)
class Recipe:
    task: Task
    model: str  # a model preset name or JSON path (vidsearch.models)
    data: DataConfig
    loop: LoopConfig
    optim: OptimConfig
    preprocess: str | Mapping[str, Any] = "viclip"  # a vidsearch.video preset name or an inline spec
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None  # checkpoint to start from
    objective: Mapping[str, Any] = field(default_factory=dict)
    grad_checkpointing: bool = False
    device: DeviceChoice = "auto"
    export_dtype: Literal["float32", "float16"] = "float32"
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in get_args(Task):
            raise ConfigError(f"recipe: task must be one of {get_args(Task)}, got {self.task!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"recipe: device must be auto, cpu or cuda, got {self.device!r}")
        if self.export_dtype not in ("float32", "float16"):
            raise ConfigError(f"recipe: export_dtype must be float32 or float16, got {self.export_dtype!r}")

    def objective_as(self, cls: type[T]) -> T:
        """The `objective` section as the task's typed settings; a bad or unknown key is a ConfigError."""
        try:
            return cls(**dict(self.objective))
        except TypeError as err:
            raise ConfigError(f"objective: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form; `recipe_from_dict` turns it back into an equal recipe."""
        return json.loads(json.dumps(asdict(self)))


_SECTIONS: dict[str, type[Any]] = {"data": DataConfig, "loop": LoopConfig, "optim": OptimConfig}
_TUPLES = {("optim", "betas")}


def _section(name: str, cls: type[Any], values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"recipe: section {name!r} must be an object, got {values!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"recipe: unknown {name} settings {unknown}; known: {sorted(known)}")
    values = {k: tuple(v) if (name, k) in _TUPLES else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"recipe: section {name!r}: {err}") from None


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Parse a recipe from its JSON form; unknown keys and bad values are ConfigErrors."""
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"recipe: unknown keys {unknown}; known: {sorted(known)}")
    values = dict(data)
    for name, cls in _SECTIONS.items():
        if name not in values:
            raise ConfigError(f"recipe: the {name!r} section is missing")
        values[name] = _section(name, cls, values[name])
    try:
        return Recipe(**values)
    except TypeError as err:
        raise ConfigError(f"recipe: {err}") from None


def _preset_folder() -> Any:
    return resources.files("vidsearch.training") / "presets"


def list_recipes() -> list[str]:
    """Names of the shipped training recipes."""
    return sorted(
        f.name.removesuffix(".json") for f in _preset_folder().iterdir() if f.name.endswith(".json")
    )


def _parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with dotted keys set (`optim.lr`, `data.synthetic.n`); string values are parsed as JSON."""
    out = json.loads(json.dumps(data))
    for dotted, raw in overrides.items():
        value = _parse_value(raw) if isinstance(raw, str) else raw
        keys = dotted.split(".")
        target = out
        for key in keys[:-1]:
            child = target.get(key)
            if child is None:
                child = target[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"recipe override {dotted!r}: {key!r} is not a section")
            target = child
        target[keys[-1]] = value
    return out


def load_recipe(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """A shipped recipe by name or a recipe JSON file by path, with dotted-key overrides."""
    path = Path(name_or_path)
    if str(name_or_path) in list_recipes():
        text = (_preset_folder() / f"{name_or_path}.json").read_text()
    elif path.suffix == ".json" and path.is_file():
        text = path.read_text()
    else:
        raise ConfigError(
            f"unknown training recipe {str(name_or_path)!r}; shipped: {', '.join(list_recipes())}"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"training recipe {name_or_path}: not valid JSON ({err})") from None
    return recipe_from_dict(apply_overrides(data, overrides or {}))
