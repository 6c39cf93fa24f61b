"""Reading an exported model repository: which models it holds and how to call them.

`vidsearch export` writes Triton's layout with a `vidsearch.json` in every version directory; both
runtimes read the same files (the Triton runtime to know tensor names, tokenizer, preprocessing and
the version to ask the server for), so they cannot disagree on what they serve. The newest version of
each model is used, as Triton's default version policy does.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidsearch.errors import ConfigError
from vidsearch.models.text_tokenizer import KINDS as TOKENIZER_KINDS
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.video.preprocess import Preprocess

MANIFEST = "vidsearch.json"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy name
    shape: tuple[int, ...]  # with the batch axis (-1)


@dataclass(frozen=True)
class ModelSpec:
    """One exported model version, as its `vidsearch.json` describes it."""

    name: str
    version: int
    directory: Path  # the version directory
    task: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    embedding_dim: int
    normalized_output: str | None
    preprocess: Preprocess | None
    tokenizer: Mapping[str, Any] | None
    max_batch: int
    preset: str
    checkpoint_sha256: str

    @property
    def model_name(self) -> str:
        """The model's name, as indexes record it: its preset (a preset file's stem)."""
        return Path(self.preset).stem if self.preset.endswith(".json") else self.preset

    @property
    def onnx_path(self) -> Path:
        return self.directory / "model.onnx"

    @property
    def input(self) -> TensorInfo:
        """The model's only input (every exported graph has one)."""
        return self.inputs[0]

    def output(self, name: str) -> TensorInfo:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise ConfigError(f"{self.name}: no output {name!r} (has {[t.name for t in self.outputs]})")


@dataclass(frozen=True)
class RepositoryModels:
    """The models a runtime serves; any may be missing (a text-only repository still answers Search)."""

    root: Path
    text: ModelSpec | None
    vision: ModelSpec | None
    classifier: ModelSpec | None

    @property
    def primary(self) -> ModelSpec:
        model = self.text or self.vision or self.classifier
        assert model is not None  # read_repository refuses an empty repository
        return model

    @property
    def model_name(self) -> str:
        """The embedding model's name (its preset), as indexes record it."""
        return self.primary.model_name

    @property
    def model_checksum(self) -> str:
        """Identifies the weights: vectors of two checkpoints must never share an index."""
        return f"sha256:{self.primary.checkpoint_sha256}"

    @property
    def dim(self) -> int:
        """Embedding dimension of the ViCLIP towers (0 when the repository has neither)."""
        tower = self.text or self.vision
        return tower.embedding_dim if tower else 0


def _tensors(entries: list[dict[str, Any]]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(e["name"], e["dtype"], tuple(int(d) for d in e["shape"])) for e in entries)


def _spec(name: str, version_dir: Path, data: dict[str, Any]) -> ModelSpec:
    try:
        preprocess = data.get("preprocess")
        if preprocess is not None:
            preprocess = Preprocess.from_dict({k: v for k, v in preprocess.items() if k != "digest"})
        return ModelSpec(
            name=name,
            version=int(version_dir.name),
            directory=version_dir,
            task=data["task"],
            inputs=_tensors(data["inputs"]),
            outputs=_tensors(data["outputs"]),
            embedding_dim=int(data["embedding_dim"]),
            normalized_output=data.get("normalized_output"),
            preprocess=preprocess,
            tokenizer=data.get("tokenizer"),
            max_batch=int(data["engine"]["max_batch"]),
            preset=str(data["source"]["preset"]),
            checkpoint_sha256=str(data["source"]["checkpoint_sha256"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{version_dir / MANIFEST}: not a vidsearch model description ({err!r})") from None


def read_model(model_dir: Path) -> ModelSpec | None:
    """The newest version of the model in `model_dir` that carries a `vidsearch.json`; None if no such."""
    if not model_dir.is_dir():
        return None
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file()),
        reverse=True,
    )
    if not versions:
        return None
    version_dir = model_dir / str(versions[0])
    try:
        data = json.loads((version_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{version_dir / MANIFEST}: unreadable ({err})") from None
    return _spec(model_dir.name, version_dir, data)


def read_repository(config: RuntimeConfig) -> RepositoryModels:
    """The models the config names, read from its repository; refuses towers of different checkpoints."""
    root = config.model_repository
    if not root.is_dir():
        raise ConfigError(f"model repository {root} does not exist: run `vidsearch export` first")
    models = RepositoryModels(
        root,
        read_model(root / config.text_model),
        read_model(root / config.vision_model),
        read_model(root / config.classifier_model),
    )
    found = [m for m in (models.text, models.vision, models.classifier) if m is not None]
    if not found:
        raise ConfigError(f"{root} holds none of {config.text_model}, {config.vision_model}, "
                          f"{config.classifier_model} (with a vidsearch.json): run `vidsearch export`")
    if models.text and models.vision and (
        models.text.checkpoint_sha256 != models.vision.checkpoint_sha256
        or models.text.embedding_dim != models.vision.embedding_dim
    ):
        raise ConfigError(f"{root}: {models.text.name} v{models.text.version} and {models.vision.name} "
                          f"v{models.vision.version} come from different checkpoints; export both together")
    for tower in (models.text, models.vision):
        if tower is not None and tower.normalized_output is None:
            raise ConfigError(f"{tower.directory}: the model has no L2-normalised output to search with")
    if models.text and (models.text.tokenizer or {}).get("kind") not in TOKENIZER_KINDS:
        raise ConfigError(f"{models.text.directory}: unknown tokenizer {models.text.tokenizer!r}")
    return models
