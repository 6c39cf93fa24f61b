"""Reading an exported model repository: which models it holds and how to call them.

`vidsearch export` writes Triton's layout with a `vidsearch.json` in every version directory
(`vidsearch.formats.model_repository`); both runtimes read the same files (the Triton runtime to know
tensor names, tokenizer, preprocessing and the version to ask the server for), so they cannot
disagree on what they serve. The newest version of each model is used, as Triton's default version
policy does. What a runtime's callers may know of these models is `RuntimeFacts` (`base`); the
layout stays in here and in the backends.
"""

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from vidsearch.errors import ConfigError, ModelFormatError
from vidsearch.formats.model_repository import (
    DESCRIPTION,
    LOGITS,
    VIDEO_EMBED_MODEL,
    ModelDescription,
    TensorInfo,
    read_description,
)
from vidsearch.models.text_tokenizer import KINDS as TOKENIZER_KINDS
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.runtime.facts import ModelFacts, RuntimeFacts
from vidsearch.video.preprocess import Preprocess

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelSpec:
    """One exported model version: its description and where it lies."""

    name: str
    version: int
    directory: Path  # the version directory
    description: ModelDescription
    preprocess: Preprocess | None
    embedding_dim: int
    max_batch: int

    @property
    def model_name(self) -> str:
        """The model's name, as indexes record it: its preset (a preset file's stem)."""
        preset = self.description.preset or ""
        return Path(preset).stem if preset.endswith(".json") else preset

    @property
    def checksum(self) -> str:
        """Identifies the weights: vectors of two checkpoints must never share an index."""
        return f"sha256:{self.description.checkpoint_sha256}"

    @property
    def onnx_path(self) -> Path:
        return self.directory / "model.onnx"

    @property
    def input(self) -> TensorInfo:
        """The model's only input (every exported graph has one)."""
        return self.description.inputs[0]

    def output(self, name: str) -> TensorInfo:
        return self.description.output(name)

    def facts(self, width: int) -> ModelFacts:
        return ModelFacts(self.model_name, str(self.version), self.checksum, width, self.max_batch,
                          self.preprocess)


@dataclass(frozen=True)
class RepositoryModels:
    """The models a runtime serves; any may be missing (a text-only repository still answers Search)."""

    root: Path
    text: ModelSpec | None
    vision: ModelSpec | None
    classifier: ModelSpec | None
    video_embed: ModelSpec | None = None  # the ensemble that decodes on a Triton server, if exported

    def facts(self, config: RuntimeConfig) -> RuntimeFacts:
        """What the runtime serving these models with `config` tells its callers."""
        text, vision, classifier = self.text, self.vision, self.classifier
        return RuntimeFacts(
            text=text.facts(text.embedding_dim) if text else None,
            vision=vision.facts(vision.embedding_dim) if vision else None,
            classifier=classifier.facts(classifier.output(LOGITS).shape[-1]) if classifier else None,
            text_batch=min(config.max_batch or text.max_batch, text.max_batch) if text else 0,
        )


def _spec(name: str, version_dir: Path, description: ModelDescription) -> ModelSpec:
    where = version_dir / DESCRIPTION
    if description.max_batch is None or description.embedding_dim is None or description.preset is None \
            or description.checkpoint_sha256 is None:
        raise ModelFormatError(f"{where}: not a model a runtime can serve (no engine, embedding dimension "
                               "or source checkpoint)")
    preprocess = None
    if description.preprocess is not None:
        preprocess = Preprocess.from_dict(dict(description.preprocess))
        if description.preprocess_digest is not None and preprocess.digest() != description.preprocess_digest:
            raise ModelFormatError(f"{where}: the preprocessing spec does not match its digest "
                                   f"{description.preprocess_digest} (edited by hand?)")
    return ModelSpec(name, int(version_dir.name), version_dir, description, preprocess,
                     description.embedding_dim, description.max_batch)


def read_model(model_dir: Path) -> ModelSpec | None:
    """The newest version of the model in `model_dir` that carries a `vidsearch.json`; None if no such."""
    if not model_dir.is_dir():
        return None
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / DESCRIPTION).is_file()),
        reverse=True,
    )
    if not versions:
        return None
    version_dir = model_dir / str(versions[0])
    description = read_description(version_dir)
    assert description is not None  # the version was chosen for having one
    return _spec(model_dir.name, version_dir, description)


def _video_embed(root: Path, vision: ModelSpec | None) -> ModelSpec | None:
    """The repository's `viclip_video_embed` ensemble, if it was exported with this vision model; an
    older repository has none (or one without the facts a runtime needs): video is decoded in-process."""
    if vision is None:
        return None
    try:
        ensemble = read_model(root / VIDEO_EMBED_MODEL)
    except ModelFormatError as err:
        log.info("%s: %s; video will be decoded in this process", root / VIDEO_EMBED_MODEL, err)
        return None
    if ensemble is None:
        return None
    if ensemble.checksum != vision.checksum or ensemble.preprocess != vision.preprocess:
        raise ConfigError(f"{ensemble.directory} was exported from another checkpoint or preprocessing than "
                          f"{vision.name} v{vision.version}; export both together")
    return ensemble


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
        models.text.checksum != models.vision.checksum
        or models.text.embedding_dim != models.vision.embedding_dim
    ):
        raise ConfigError(f"{root}: {models.text.name} v{models.text.version} and {models.vision.name} "
                          f"v{models.vision.version} come from different checkpoints; export both together")
    for tower in (models.text, models.vision):
        if tower is not None and tower.description.normalized_output is None:
            raise ConfigError(f"{tower.directory}: the model has no L2-normalised output to search with")
    if models.text:
        tokenizer = models.text.description.tokenizer
        if (tokenizer or {}).get("kind") not in TOKENIZER_KINDS:
            raise ConfigError(f"{models.text.directory}: unknown tokenizer {tokenizer!r}")
    return replace(models, video_embed=_video_embed(root, models.vision))
