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
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vidsearch.models import Tokenizer, ViCLIP
from vidsearch.training.datasets import Item
from vidsearch.training.evaluate import retrieval_metrics
from vidsearch.training.manifest import Manifest
from vidsearch.training.synthetic import MOTIONS, caption_for

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
    text = torch.nn.functional.normalize(embed_texts(model, tokenizer, texts), dim=-1).view(
        len(rows), len(MOTIONS), -1
    )
    scores = (text @ torch.nn.functional.normalize(video, dim=-1)[:, :, None]).squeeze(-1)
    truth = torch.tensor([MOTIONS.index(row.extra["motion"]) for row in rows])
    return float((scores.argmax(dim=1) == truth).float().mean())


def is_synthetic(manifest: Manifest) -> bool:
    return all({"colour", "shape", "motion"} <= set(row.extra) for row in manifest.rows)


def evaluate_viclip(
    model: ViCLIP, manifest: Manifest, dataset: Dataset[Item], tokenizer: Tokenizer
) -> dict[str, Any]:
    """Retrieval metrics over the manifest's distinct captions; on synthetic data also the
    single-frame control (retrieval and motion accuracy, clip vs repeated middle frame)."""
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
    return report
