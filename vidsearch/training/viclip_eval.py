"""Evaluating a ViCLIP: retrieval over a test manifest, and on the synthetic set a control that shows
how much of the result needs time.

The control feeds the same model each clip's middle frame repeated over all frame slots. Captions
that differ only in motion ("a red circle moves to the left" / "… to the right" / "… grows" …) can
then be told apart only by chance (one in seven), while the full clip should tell them apart well;
`motion` reports both accuracies.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vidsearch.models import Tokenizer, ViCLIP
from vidsearch.training.datasets import Item
from vidsearch.training.evaluate import (
    VIDEO_TEMPLATES,
    retrieval_metrics,
    topk_accuracy,
    zero_shot_scores,
    zero_shot_weights,
)
from vidsearch.training.synthetic import COLOURS, MOTIONS, SHAPES, caption_for
from vidsearch.video.manifest import Manifest

VideoTransform = Callable[[Tensor], Tensor]


def middle_frame_repeated(video: Tensor) -> Tensor:
    """A batch of TCHW clips [B, T, C, H, W] with every frame replaced by the middle one."""
    frames = video.shape[1]
    return video[:, frames // 2 : frames // 2 + 1].expand_as(video).contiguous()


@torch.no_grad()
def embed_videos(
    model: ViCLIP, dataset: Dataset[Item], batch_size: int = 64, transform: VideoTransform | None = None
) -> Tensor:
    """Clip embeddings [N, D] in data-set order (un-normalised, as the model returns them)."""
    model.eval()
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size):
        video = batch["video"]
        out.append(model.encode_video(transform(video) if transform else video))
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model: ViCLIP, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    model.eval()
    context = model.config.context_length
    out = [
        model.encode_text(torch.from_numpy(tokenizer(list(texts[i : i + batch_size]), context)))
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(out)


def _retrieval(video: Tensor, manifest: Manifest, text: Tensor, captions: list[str]) -> dict[str, Any]:
    index = {caption: number for number, caption in enumerate(captions)}
    metrics = retrieval_metrics(video, text, [index[row.caption] for row in manifest.rows])
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(metrics).items()}


def motion_accuracy(video: Tensor, manifest: Manifest, model: ViCLIP, tokenizer: Tokenizer) -> float:
    """Share of clips whose own caption beats the six that differ only in motion."""
    rows = manifest.rows
    texts = [
        caption_for(row.extra["colour"], row.extra["shape"], motion) for row in rows for motion in MOTIONS
    ]
    text = F.normalize(embed_texts(model, tokenizer, texts), dim=-1).view(len(rows), len(MOTIONS), -1)
    scores = (text @ F.normalize(video, dim=-1)[:, :, None]).squeeze(-1)
    truth = torch.tensor([MOTIONS.index(row.extra["motion"]) for row in rows])
    return float((scores.argmax(dim=1) == truth).float().mean())


def all_combination_accuracy(
    video: Tensor, manifest: Manifest, model: ViCLIP, tokenizer: Tokenizer
) -> dict[str, float]:
    """Each clip's best caption among all colour–shape–motion combinations, seen in training or not:
    the share right in full and per attribute. Harder than the held-out gallery, where a clip's
    colour and motion axis already single out its shape (one shape is held out per pair)."""
    everything = [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]
    text = F.normalize(embed_texts(model, tokenizer, [caption_for(*combo) for combo in everything]), dim=-1)
    best = (F.normalize(video, dim=-1) @ text.T).argmax(dim=1).tolist()
    truth = [(row.extra["colour"], row.extra["shape"], row.extra["motion"]) for row in manifest.rows]
    picked = [everything[i] for i in best]
    hits = {"combination": [p == t for p, t in zip(picked, truth, strict=True)]}
    for position, name in enumerate(("colour", "shape", "motion")):
        hits[name] = [p[position] == t[position] for p, t in zip(picked, truth, strict=True)]
    return {name: round(sum(flags) / len(flags), 4) for name, flags in hits.items()}


def zero_shot_accuracy(
    model: ViCLIP,
    tokenizer: Tokenizer,
    dataset: Dataset[Item],
    class_names: Sequence[str],
    templates: Sequence[str] = VIDEO_TEMPLATES,
) -> dict[str, float]:
    """Top-1 / top-5 of zero-shot classification: each clip (items carrying `label`, an index into
    `class_names`) against prompt-ensembled class embeddings."""
    weights = zero_shot_weights(
        lambda prompts: embed_texts(model, tokenizer, prompts), class_names, templates
    )
    labels = torch.cat([batch["label"] for batch in DataLoader(dataset, batch_size=256)])
    return topk_accuracy(zero_shot_scores(embed_videos(model, dataset), weights), labels, ks=(1, 5))


def is_synthetic(manifest: Manifest) -> bool:
    return all({"colour", "shape", "motion"} <= set(row.extra) for row in manifest.rows)


def evaluate_viclip(
    model: ViCLIP, manifest: Manifest, dataset: Dataset[Item], tokenizer: Tokenizer
) -> dict[str, Any]:
    """Retrieval metrics over the manifest's distinct captions; on synthetic data also the accuracy
    over all combinations and the single-frame control (clip vs repeated middle frame)."""
    captions = sorted({row.caption for row in manifest.rows})
    text = embed_texts(model, tokenizer, captions)
    video = embed_videos(model, dataset)
    report: dict[str, Any] = {"retrieval": _retrieval(video, manifest, text, captions)}
    if is_synthetic(manifest):
        still = embed_videos(model, dataset, transform=middle_frame_repeated)
        report["single_frame"] = {"retrieval": _retrieval(still, manifest, text, captions)}
        report["motion"] = {
            "clip_accuracy": round(motion_accuracy(video, manifest, model, tokenizer), 4),
            "single_frame_accuracy": round(motion_accuracy(still, manifest, model, tokenizer), 4),
            "chance": round(1 / len(MOTIONS), 4),
        }
        report["all_combinations"] = all_combination_accuracy(video, manifest, model, tokenizer)
    return report
