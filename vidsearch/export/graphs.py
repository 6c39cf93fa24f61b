"""The graphs an export writes: which module, which named inputs and outputs, which preprocessing.

ViCLIP becomes two models, `viclip_text` and `viclip_vision`; InternVideo2 becomes the same two (the
names are the roles the runtimes, the Triton ensemble and DALI look for; `vidsearch.json` says which
model fills them); a VideoMAE V2 classifier becomes one, `videomae_v2`. Every graph's first axis is
the batch. InternVideo2's text graph takes the same TOKENS input (WordPiece ids padded with 0, the
attention mask derived in the graph), so runtimes feed both families alike.

Normalisation is decided once, in the tower modules (`vidsearch.models.towers`, which the torch
runtime runs too): each ViCLIP tower returns its raw embedding (`EMBEDDING`, what the PyTorch model
returns) AND its L2-normalised copy (`EMBEDDING_NORMALIZED`, x / max(‖x‖, 1e-12)), computed inside the
graph. Search uses the normalised output; training-side tools the raw one.
Tensor names are upper-case, Triton's habit, which also keeps them apart from the exporter's
internal value names (lower-case operator names such as `embedding`).
"""

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from vidsearch.errors import ConfigError
from vidsearch.formats.model_repository import (
    CLASSIFIER_MODEL,
    EMBEDDING,
    EMBEDDING_NORMALIZED,
    FEATURES,
    FRAMES,
    LOGITS,
    TEXT_MODEL,
    TOKENS,
    VIDEO,
    VISION_MODEL,
)
from vidsearch.models import tokenizer as clip_tokenizer
from vidsearch.models.internvideo2 import InternVideo2
from vidsearch.models.towers import Classifier, EmbeddingModel, TextTower, VisionTower
from vidsearch.models.viclip import ViCLIP
from vidsearch.models.videomae import VideoMAEv2
from vidsearch.models.wordpiece import VOCABULARY_FILE, read_vocabulary
from vidsearch.video import preprocess as video_preprocess

CLIP_VOCAB_SIZE = 49408
TOWERS = {TEXT_MODEL: "text", VISION_MODEL: "vision", CLASSIFIER_MODEL: "classifier"}


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output, without its batch axis; `high` bounds integer ids (exclusive)."""

    name: str
    dtype: str  # numpy name: "float32", "int64"
    shape: tuple[int, ...]
    high: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": [-1, *self.shape]}


@dataclass(frozen=True)
class Graph:
    """One model of the repository: the module to export and what describes it in `vidsearch.json`."""

    name: str
    task: str
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    output_meaning: dict[str, str]
    embedding_dim: int
    preprocess: video_preprocess.Preprocess | None = None
    tokenizer: dict[str, Any] | None = None
    normalized_output: str | None = None  # the output that is L2-normalised in the graph, if any
    files: Mapping[str, Path] = field(default_factory=dict)  # copied beside the model: name → source

    @property
    def tower(self) -> str:
        """Which tower of the model the graph serves: "text", "vision" or "classifier"."""
        return TOWERS[self.name]


_EMBEDDING_MEANING = {
    EMBEDDING: "raw embedding, as the PyTorch model returns it",
    EMBEDDING_NORMALIZED: "L2-normalised embedding, x / max(||x||, 1e-12), computed in the graph",
}


def tokenizer_info(context_length: int, vocab_size: int) -> dict[str, Any]:
    """What a client needs to produce the text model's input, and a checksum of the vocabulary."""
    vocab = resources.files("vidsearch.models").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    return {
        "kind": "clip_bpe",
        "vocabulary": "bpe_simple_vocab_16e6.txt.gz",
        "vocabulary_sha256": hashlib.sha256(vocab).hexdigest(),
        "vocab_size": vocab_size,
        "context_length": context_length,
        "start_token": clip_tokenizer.SOT_TOKEN,
        "end_token": clip_tokenizer.EOT_TOKEN,
        "pad_token": 0,
        "dtype": "int64",
    }


def scaled_preprocess(preset: str, image_size: int, frames: int) -> video_preprocess.Preprocess:
    """The shipped preprocessing preset, resized and re-sampled to the model's input."""
    spec = video_preprocess.get_preprocess_preset(preset)
    short_side = None
    if spec.short_side is not None:
        short_side = math.ceil(spec.short_side * image_size / max(spec.size))
    return replace(spec, size=(image_size, image_size), short_side=short_side,
                   sampling=replace(spec.sampling, frames=frames))


def _embedding_graphs(model: EmbeddingModel, tokenizer: dict[str, Any], preprocess: str,
                      files: Mapping[str, Path] | None = None) -> list[Graph]:
    """The text and vision graphs of a video–text model: token ids in, frames in, raw and normalised
    embeddings out."""
    config = model.config
    dim = config.embed_dim
    outputs = (TensorSpec(EMBEDDING, "float32", (dim,)),
               TensorSpec(EMBEDDING_NORMALIZED, "float32", (dim,)))
    size = config.image_size
    text = Graph(
        TEXT_MODEL, "text_embedding", TextTower(model).eval(),
        (TensorSpec(TOKENS, "int64", (config.context_length,), high=config.vocab_size),), outputs,
        _EMBEDDING_MEANING, dim, tokenizer=tokenizer, normalized_output=EMBEDDING_NORMALIZED,
        files=files or {},
    )
    vision = Graph(
        VISION_MODEL, "video_embedding", VisionTower(model).eval(),
        (TensorSpec(FRAMES, "float32", (config.num_frames, 3, size, size)),), outputs,
        _EMBEDDING_MEANING, dim, preprocess=scaled_preprocess(preprocess, size, config.num_frames),
        normalized_output=EMBEDDING_NORMALIZED,
    )
    return [text, vision]


def viclip_graphs(model: ViCLIP) -> list[Graph]:
    config = model.config
    if config.vocab_size != CLIP_VOCAB_SIZE:
        raise ConfigError(f"export: viclip_text ships the CLIP BPE tokenizer ({CLIP_VOCAB_SIZE} ids); this "
                          f"model's vocabulary has {config.vocab_size}")
    return _embedding_graphs(model, tokenizer_info(config.context_length, config.vocab_size), "viclip")


def wordpiece_info(vocabulary: Path, context_length: int, vocab_size: int) -> dict[str, Any]:
    """The WordPiece counterpart of `tokenizer_info`; the vocabulary travels beside the model."""
    tokens = read_vocabulary(vocabulary)
    if len(tokens) != vocab_size:
        raise ConfigError(f"export: {vocabulary} has {len(tokens)} tokens but the text tower's embedding "
                          f"table has {vocab_size} rows: it is not this model's vocabulary")
    return {
        "kind": "wordpiece",
        "vocabulary": VOCABULARY_FILE,
        "vocabulary_sha256": hashlib.sha256(vocabulary.read_bytes()).hexdigest(),
        "vocab_size": vocab_size,
        "context_length": context_length,
        "lowercase": True,
        "start_token": tokens.index("[CLS]"),
        "end_token": tokens.index("[SEP]"),
        "pad_token": 0,
        "dtype": "int64",
    }


def internvideo2_graphs(model: InternVideo2, vocabulary: Path | None) -> list[Graph]:
    config = model.config
    if vocabulary is None or not vocabulary.is_file():
        raise ConfigError(f"export: InternVideo2's text tower needs its WordPiece vocabulary ({vocabulary} "
                          f"is not a file): pass --vocabulary, or put {VOCABULARY_FILE} beside the "
                          "checkpoint")
    tokenizer = wordpiece_info(vocabulary, config.context_length, config.vocab_size)
    return _embedding_graphs(model, tokenizer, "internvideo2", {VOCABULARY_FILE: vocabulary})


def videomae_graphs(model: VideoMAEv2) -> list[Graph]:
    config = model.config
    if config.num_classes < 1:
        raise ConfigError("export: this VideoMAE V2 has no classification head (num_classes 0); export a "
                          "classifier checkpoint")
    size = config.image_size
    spec = scaled_preprocess("videomae_v2", size, config.num_frames)
    if spec.layout != "CTHW":
        raise ConfigError(f"export: VideoMAE V2 takes [B, 3, T, H, W]; preset layout is {spec.layout}")
    graph = Graph(
        CLASSIFIER_MODEL, "video_classification", Classifier(model).eval(),
        (TensorSpec(VIDEO, "float32", (config.in_chans, config.num_frames, size, size)),),
        (TensorSpec(LOGITS, "float32", (config.num_classes,)),
         TensorSpec(FEATURES, "float32", (config.width,))),
        {LOGITS: "class scores before softmax", FEATURES: "pooled clip features, the head's input"},
        config.width, preprocess=spec,
    )
    return [graph]


def graphs_for(model: nn.Module, vocabulary: Path | None = None) -> list[Graph]:
    """The graphs a loaded model exports as; `vocabulary` is the text tower's file where it needs one."""
    if isinstance(model, ViCLIP):
        return viclip_graphs(model)
    if isinstance(model, InternVideo2):
        return internvideo2_graphs(model, vocabulary)
    if isinstance(model, VideoMAEv2):
        return videomae_graphs(model)
    raise ConfigError(f"export: {type(model).__name__} cannot be exported; vidsearch exports ViCLIP, "
                      "InternVideo2 and VideoMAE V2 classifiers (not the pre-training model)")


def architecture(model: EmbeddingModel | VideoMAEv2) -> dict[str, Any]:
    """The model's config as a plain dict, for `vidsearch.json`."""
    return asdict(model.config)
