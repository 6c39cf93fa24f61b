"""Scores for Classify: zero-shot with ViCLIP, or a VideoMAE V2 classifier's own classes.

Zero-shot, as CLIP does it: every label is written into each prompt template, the prompts' text
embeddings are averaged per label (and re-normalised); the video's clip embeddings are averaged (and
re-normalised); probabilities are the softmax of 100 × cosine similarity (ViCLIP's fixed retrieval
scale). A classifier's probabilities are its softmax per clip, averaged over the clips.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, RequestError

DEFAULT_TEMPLATES = ("a video of {}.",)
LOGIT_SCALE = 100.0


def _normalise(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.asarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)


def _softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def prompts(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every label in every template, label-major; each template must hold exactly one `{}`."""
    if len(set(labels)) != len(labels):
        raise RequestError("labels must be distinct")
    for template in templates:
        if template.count("{}") != 1:
            raise RequestError(f"template {template!r} must contain exactly one '{{}}' for the label")
    return [template.replace("{}", label) for label in labels for template in templates]


def zero_shot(text: NDArray[np.float32], labels: int, clips: NDArray[np.float32]) -> NDArray[np.float32]:
    """Label probabilities from prompt embeddings [labels × templates, dim] and clip embeddings [n, dim]."""
    per_label = _normalise(text.reshape(labels, -1, text.shape[-1]).mean(axis=1))
    video = _normalise(clips.mean(axis=0))
    return _softmax(np.asarray(LOGIT_SCALE * per_label @ video, dtype=np.float32))


def classifier(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    """Class probabilities from per-clip logits [n, classes]: the mean of the clips' softmax."""
    return np.asarray(_softmax(logits).mean(axis=0), dtype=np.float32)


def top(probabilities: NDArray[np.float32], names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable labels, best first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(names[i], float(probabilities[i])) for i in order]


def class_names(path: Path | None, classes: int) -> list[str]:
    """The classifier's class names from a file (one per line), or `class <i>` without one."""
    if path is None:
        return [f"class {i}" for i in range(classes)]
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ConfigError(f"classifier labels {path}: {err.strerror}") from None
    if len(names) != classes:
        raise ConfigError(f"classifier labels {path}: {len(names)} names for a {classes}-class classifier")
    return names
