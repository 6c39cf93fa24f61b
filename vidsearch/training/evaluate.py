"""Evaluation: retrieval recall and median rank, zero-shot classification, top-k over several views.

Retrieval is scored with duplicate captions merged: the queries are the distinct captions, and a
text→video query is answered correctly at rank r if any clip carrying that caption is r-th. With
unique captions (the usual benchmarks) this is the standard protocol; with repeated captions (the
synthetic set, where many clips share one) it does not count a clip of the right caption as a miss.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor

from vidsearch.errors import ConfigError

# Video prompts for zero-shot action classification; the class name fills {}.
VIDEO_TEMPLATES = (
    "a video of a person {}.",
    "a video of {}.",
    "a person is {}.",
    "a clip showing {}.",
    "{}",
)


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics-400 class names in label-index order (package data; source in its header)."""
    text = (resources.files("vidsearch.training") / "kinetics400.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@dataclass(frozen=True)
class RetrievalMetrics:
    t2v_r1: float
    t2v_r5: float
    t2v_r10: float
    t2v_median_rank: float
    v2t_r1: float
    v2t_r5: float
    v2t_r10: float
    v2t_median_rank: float
    queries: int
    gallery: int


def ranks_of_first_match(similarity: Tensor, relevant: Tensor) -> Tensor:
    """1-based rank of the best-ranked relevant column in each row of `similarity` [Q, G]."""
    order = similarity.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order)
    if not bool(hits.any(dim=1).all()):
        raise ConfigError("retrieval: every query needs at least one relevant item")
    return hits.float().argmax(dim=1) + 1


def _recall(ranks: Tensor, k: int) -> float:
    return float((ranks <= k).float().mean())


def retrieval_metrics(video: Tensor, text: Tensor, caption_of_video: Sequence[int]) -> RetrievalMetrics:
    """Recall@1/5/10 and median rank both ways. `text` [Q, D] embeds the distinct captions,
    `video` [V, D] the clips, and `caption_of_video[v]` is the row of `text` describing clip v."""
    owner = torch.as_tensor(caption_of_video, dtype=torch.long)
    if owner.shape != (video.shape[0],) or int(owner.max()) >= text.shape[0] or int(owner.min()) < 0:
        raise ConfigError("retrieval: caption_of_video must give a caption row for every video")
    similarity = F.normalize(text.float(), dim=-1) @ F.normalize(video.float(), dim=-1).T  # [Q, V]
    relevant = owner[None, :] == torch.arange(text.shape[0])[:, None]
    t2v = ranks_of_first_match(similarity, relevant)
    v2t = ranks_of_first_match(similarity.T, relevant.T)
    return RetrievalMetrics(
        _recall(t2v, 1),
        _recall(t2v, 5),
        _recall(t2v, 10),
        float(t2v.float().median()),
        _recall(v2t, 1),
        _recall(v2t, 5),
        _recall(v2t, 10),
        float(v2t.float().median()),
        int(text.shape[0]),
        int(video.shape[0]),
    )


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of rows whose label is among the k highest scores, for each k (capped at the classes)."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return {f"top{k}": float(hit[:, :k].any(dim=1).float().mean()) for k in ks}


def zero_shot_weights(
    encode_text: Callable[[Sequence[str]], Tensor],
    class_names: Sequence[str],
    templates: Sequence[str] = VIDEO_TEMPLATES,
) -> Tensor:
    """One unit vector per class [C, D]: the mean of its normalised prompt embeddings, renormalised
    (CLIP's prompt ensembling)."""
    if not class_names or not templates:
        raise ConfigError("zero-shot: need at least one class name and one template")
    rows = []
    for name in class_names:
        prompts = [template.format(name) for template in templates]
        rows.append(F.normalize(F.normalize(encode_text(prompts).float(), dim=-1).mean(dim=0), dim=-1))
    return torch.stack(rows)


def zero_shot_scores(video: Tensor, weights: Tensor) -> Tensor:
    """Cosine similarity of each clip [V, D] to each class [C, D], scaled by CLIP's fixed 100."""
    return 100.0 * F.normalize(video.float(), dim=-1) @ weights.T


def multiview_probabilities(logits: Tensor) -> Tensor:
    """Class probabilities per video from logits of several views [B, views, C]: the mean of the
    views' softmax (VideoMAE V2's evaluation)."""
    if logits.dim() != 3:
        raise ConfigError(f"multi-view logits must be [B, views, C], got {tuple(logits.shape)}")
    return logits.float().softmax(dim=-1).mean(dim=1)
