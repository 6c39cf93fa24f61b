"""The exported model repository: its models' and tensors' names, and each version's `vidsearch.json`.

`vidsearch export` writes Triton's layout, `<repository>/<model>/<version>/`, and in every version
directory a `vidsearch.json` describing that version: task, tensors, embedding dimension, which
output is L2-normalised, the preprocessing spec (with its digest), the tokenizer, the serving engine
and the source checkpoint; and, for the torch runtime, the tower's own weights (`model.safetensors`)
with their sha256 and the family and config that rebuild the module around them. The runtimes and
the exporter read it back through `read_description`, which checks the `format` field, so a file of
another format fails with one clear error instead of a missing key somewhere later.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vidsearch.errors import ModelFormatError
from vidsearch.formats.atomic import write_atomic

DESCRIPTION = "vidsearch.json"
FORMAT = 1

# The models of a repository, by the names Triton serves them under.
TEXT_MODEL = "viclip_text"
VISION_MODEL = "viclip_vision"
CLASSIFIER_MODEL = "videomae_v2"

# Tensor names (upper case, Triton's habit).
TOKENS = "TOKENS"  # the text tower's input: token ids
FRAMES = "FRAMES"  # the vision tower's input: preprocessed clips [B, T, 3, H, W]
VIDEO = "VIDEO"  # the classifier's input: preprocessed clips [B, 3, T, H, W]
EMBEDDING = "EMBEDDING"  # a tower's raw embedding
EMBEDDING_NORMALIZED = "EMBEDDING_NORMALIZED"  # the same, L2-normalised inside the graph
LOGITS = "LOGITS"  # the classifier's class scores before softmax
FEATURES = "FEATURES"  # the classifier's pooled features
WEIGHTS = "model.safetensors"  # a version's PyTorch weights (the tower's tensors only), for the torch runtime

# The ensemble that decodes on the server: a whole encoded file (uint8, one row per clip) and the clip's
# frame numbers (int32, presentation order, `vidsearch.video.dali.clip_frame_numbers`) → the vision
# tower's outputs. Its preprocessing model answers a video it cannot decode with an error whose
# message starts with DECODE_ERROR_PREFIX (then the reason), so clients raise VideoDecodeError again.
VIDEO_EMBED_MODEL = "viclip_video_embed"
VIDEO_EMBED_INPUTS = ("VIDEO", "FRAME_INDICES")
DECODE_ERROR_PREFIX = "VideoDecodeError: "


class PreprocessSpec(Protocol):
    """A preprocessing spec as the description stores it (`vidsearch.video.Preprocess`)."""

    def to_dict(self) -> dict[str, Any]: ...

    def digest(self) -> str: ...


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy name
    shape: tuple[int, ...]  # with the batch axis (-1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class WeightsInfo:
    """The PyTorch weights of one exported tower: enough to rebuild and load it without the checkpoint."""

    file: str  # beside `vidsearch.json`, safetensors
    sha256: str  # of the file: damaged or swapped weights are refused before they are served
    family: str  # the model family (`vidsearch.models.FAMILIES`)
    config: Mapping[str, Any]  # the family's config fields, as the preset gives them
    tower: str  # "text", "vision" or "classifier"
    prefixes: tuple[str, ...]  # the state-dict keys the file holds start with one of these

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "family": self.family, "config": dict(self.config),
                "tower": self.tower, "prefixes": list(self.prefixes)}


@dataclass(frozen=True)
class ModelDescription:
    """One version's `vidsearch.json`, as read back; fields a model kind does not have are None."""

    model_name: str
    task: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    identity: Mapping[str, Any]  # what makes two exports the same model (a new version differs in weights)
    embedding_dim: int | None
    normalized_output: str | None
    preprocess: Mapping[str, Any] | None  # the spec's dict, without its digest
    preprocess_digest: str | None
    tokenizer: Mapping[str, Any] | None
    max_batch: int | None
    preset: str | None
    checkpoint_sha256: str | None
    weights: WeightsInfo | None = None  # None: exported before the torch runtime, or not a tower

    def output(self, name: str) -> TensorInfo:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        names = [t.name for t in self.outputs]
        raise ModelFormatError(f"{self.model_name}: no output {name!r} (has {names})")


def write_description(version_dir: Path, version: int, body: Mapping[str, Any],
                      preprocess: PreprocessSpec | None) -> None:
    """Write a version's `vidsearch.json`: `body`, the format, the version, the spec with its digest."""
    spec = None if preprocess is None else {**preprocess.to_dict(), "digest": preprocess.digest()}
    data = {"format": FORMAT, "version": version, **body, "preprocess": spec}
    write_atomic(version_dir / DESCRIPTION, json.dumps(data, indent=2) + "\n")


def read_description(version_dir: Path) -> ModelDescription | None:
    """The description of a version directory; None if it has no `vidsearch.json` (not written by us)."""
    path = version_dir / DESCRIPTION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: not a JSON object")
    if data.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: format {data.get('format')!r}; this vidsearch reads format {FORMAT} "
                               "(export the model again with this version)")
    try:
        return _description(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFormatError(f"{path}: not a vidsearch model description ({err!r})") from None


def _tensors(entries: list[dict[str, Any]]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(str(e["name"]), str(e["dtype"]), tuple(int(d) for d in e["shape"]))
                 for e in entries)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _description(data: dict[str, Any]) -> ModelDescription:
    preprocess = data.get("preprocess")
    digest = None
    if preprocess is not None:
        preprocess = dict(preprocess)
        digest = preprocess.pop("digest", None)
    source = data.get("source") or {}
    weights = data.get("weights")
    return ModelDescription(
        model_name=str(data["model_name"]),
        task=str(data["task"]),
        inputs=_tensors(data["inputs"]),
        outputs=_tensors(data["outputs"]),
        identity=dict(data["identity"]),
        embedding_dim=_optional_int(data.get("embedding_dim")),
        normalized_output=data.get("normalized_output"),
        preprocess=preprocess,
        preprocess_digest=digest,
        tokenizer=data.get("tokenizer"),
        max_batch=_optional_int((data.get("engine") or {}).get("max_batch")),
        preset=source.get("preset"),
        checkpoint_sha256=source.get("checkpoint_sha256"),
        weights=None if weights is None else WeightsInfo(
            str(weights["file"]), str(weights["sha256"]), str(weights["family"]), dict(weights["config"]),
            str(weights["tower"]), tuple(str(p) for p in weights["prefixes"])),
    )
