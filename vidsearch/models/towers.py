"""The served towers of a model: the exact modules that the ONNX export traces and the torch runtime runs.

One definition for both, so an exported graph and the in-process PyTorch runtime compute the same
function: a ViCLIP or InternVideo2 tower returns its raw embedding and its L2-normalised copy
(x / max(‖x‖, 1e-12)); a VideoMAE V2 classifier returns its class scores and pooled features. Each
tower also names the parameters it reads (`TOWER_PREFIXES`), so its weights can be saved on their own.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.models.internvideo2 import InternVideo2
from vidsearch.models.viclip import ViCLIP
from vidsearch.models.videomae import VideoMAEv2

EmbeddingModel = ViCLIP | InternVideo2

# The state-dict key prefixes each tower reads ("" for the whole model).
TOWER_PREFIXES = {
    "text": ("text_encoder.", "text_proj."),
    "vision": ("vision_encoder.", "vision_proj."),
    "classifier": ("",),
}


class TextTower(nn.Module):
    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.model.encode_text(tokens)
        return embedding, F.normalize(embedding, dim=-1)


class VisionTower(nn.Module):
    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.model.encode_video(frames)
        return embedding, F.normalize(embedding, dim=-1)


class Classifier(nn.Module):
    def __init__(self, model: VideoMAEv2) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.forward_head(self.model.forward_features(video), pre_logits=True)
        return self.model.head(features), features


def tower_module(role: str, model: nn.Module) -> nn.Module:
    """The served module of `role` ("text", "vision" or "classifier") over a loaded model."""
    if role == "classifier" and isinstance(model, VideoMAEv2):
        return Classifier(model)
    if role in ("text", "vision") and isinstance(model, ViCLIP | InternVideo2):
        return TextTower(model) if role == "text" else VisionTower(model)
    raise ValueError(f"a {type(model).__name__} has no {role} tower")
