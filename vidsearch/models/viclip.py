"""ViCLIP (InternVid): a CLIP whose vision tower attends jointly over space and time.

Parameter names follow the official release exactly, so its checkpoints load unchanged; the facts
that decide the numbers (token order, where the temporal embedding goes, LayerNorm eps, QuickGELU)
are listed in docs/models.md (Model contracts). Layout: config → blocks → towers → model → checkpoint
filter → config inference.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.errors import CheckpointError, ConfigError

LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ViCLIPConfig:
    """Every dimension of ViCLIP; the defaults are ViCLIP-L/14."""

    embed_dim: int = 768
    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    context_length: int = 32
    vocab_size: int = 49408
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for tower, width, heads in (
            ("vision", self.vision_width, self.vision_heads),
            ("text", self.text_width, self.text_heads),
        ):
            if heads <= 0 or width % heads:
                raise ConfigError(f"{tower}_width {width} is not divisible by {tower}_heads {heads}")
        if min(self.embed_dim, self.num_frames, self.context_length, self.vocab_size) <= 0:
            raise ConfigError(f"ViCLIP sizes must be positive: {self}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


# --- blocks ------------------------------------------------------------------------------------


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation, x·σ(1.702x); ViCLIP was trained with it."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class PackedAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names (packed q;k;v).

    Written out rather than using `nn.MultiheadAttention` so it runs batch-first on
    `scaled_dot_product_attention` and exports to ONNX as plain matmuls.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    """c_fc → QuickGELU → c_proj, 4× wide."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = PackedAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.grad_checkpointing = False

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x


# --- towers ------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """Joint space–time ViT: one class token, then patch tokens ordered patch-major, time-minor."""

    def __init__(self, config: ViCLIPConfig) -> None:
        super().__init__()
        width, patch = config.vision_width, config.patch_size
        self.num_frames = config.num_frames
        self.conv1 = nn.Conv3d(3, width, kernel_size=(1, patch, patch), stride=(1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(config.grid**2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, config.num_frames, width))
        self.ln_pre = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.transformer = Transformer(width, config.vision_layers, config.vision_heads)
        self.ln_post = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.proj = nn.Parameter(torch.zeros(width, config.embed_dim))

    def forward(self, video: Tensor, mask_ratio: float = 0.0) -> Tensor:
        """video [B, 3, T, H, W] → [B, embed_dim]; `mask_ratio` drops that share of patch tokens."""
        frames = video.shape[2]
        if frames not in (1, self.num_frames):
            raise ConfigError(f"ViCLIP takes {self.num_frames} frames (or 1, an image); got {frames}")
        x = self.conv1(video)  # [B, C, T, g, g]
        batch, width = x.shape[:2]
        x = x.permute(0, 3, 4, 2, 1).reshape(batch, -1, frames, width)  # [B, g², T, C]
        x = x + self.positional_embedding[1:].unsqueeze(1)
        temporal: Tensor = self.temporal_positional_embedding
        if frames == 1:
            temporal = temporal.mean(dim=1, keepdim=True)
        x = (x + temporal).reshape(batch, -1, width)
        if mask_ratio > 0.0:
            x = drop_tokens(x, mask_ratio)
        cls = (self.class_embedding + self.positional_embedding[0]).expand(batch, 1, width)
        x = self.ln_pre(torch.cat([cls, x], dim=1))
        x = self.ln_post(self.transformer(x))
        return x[:, 0] @ self.proj


def drop_tokens(x: Tensor, ratio: float) -> Tensor:
    """Keep a random (1 − ratio) share of the tokens of every sample (ViCLIP's training-time masking)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"mask ratio must lie in [0, 1), got {ratio}")
    batch, tokens, width = x.shape
    keep = tokens - int(ratio * tokens)
    order = torch.rand(batch, tokens, device=x.device).argsort(dim=1)[:, :keep]
    return x.gather(1, order.unsqueeze(-1).expand(batch, keep, width))


class TextTransformer(nn.Module):
    """CLIP's causal text transformer; the sentence feature is taken at the end-of-text token."""

    def __init__(self, config: ViCLIPConfig) -> None:
        super().__init__()
        width = config.text_width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(config.context_length, width))
        self.transformer = Transformer(width, config.text_layers, config.text_heads)
        self.ln_final = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.text_projection = nn.Parameter(torch.zeros(width, config.embed_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, context] (int) → [B, embed_dim]."""
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, causal=True))
        end_of_text = tokens.argmax(dim=-1)  # the end token has the largest id
        return x[torch.arange(x.shape[0], device=x.device), end_of_text] @ self.text_projection


# --- model -------------------------------------------------------------------------------------


class ViCLIP(nn.Module):
    """Video and text towers into one embedding space. Outputs are not normalised."""

    def __init__(self, config: ViCLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_encoder = VisionTransformer(config)
        self.text_encoder = TextTransformer(config)
        self.temp = nn.Parameter(torch.tensor(0.01))  # learned softmax temperature (training only)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """CLIP's initialisation, for training from scratch; loading a checkpoint overwrites it."""
        config = self.config
        towers = ((self.vision_encoder, config.vision_width), (self.text_encoder, config.text_width))
        for tower, width in towers:
            blocks = tower.transformer.resblocks
            residual_std = width**-0.5 * (2 * max(len(blocks), 1)) ** -0.5
            for block in blocks:
                assert isinstance(block, ResidualAttentionBlock)
                nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
                nn.init.normal_(block.attn.out_proj.weight, std=residual_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
                nn.init.normal_(block.mlp.c_proj.weight, std=residual_std)
        vision, text = self.vision_encoder, self.text_encoder
        scale = config.vision_width**-0.5
        nn.init.normal_(vision.class_embedding, std=scale)
        nn.init.normal_(vision.positional_embedding, std=scale)
        nn.init.normal_(vision.proj, std=scale)
        nn.init.kaiming_uniform_(vision.conv1.weight, a=math.sqrt(5))
        nn.init.normal_(text.token_embedding.weight, std=0.02)
        nn.init.normal_(text.positional_embedding, std=0.01)
        nn.init.normal_(text.text_projection, std=config.text_width**-0.5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vision_encoder.transformer.grad_checkpointing = enable
        self.text_encoder.transformer.grad_checkpointing = enable

    def encode_video(self, frames: Tensor, mask_ratio: float = 0.0) -> Tensor:
        """frames [B, T, 3, H, W] → [B, embed_dim]."""
        return self.vision_encoder(frames.permute(0, 2, 1, 3, 4), mask_ratio=mask_ratio)

    def encode_image(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] → [B, embed_dim]: a clip of one frame."""
        return self.vision_encoder(images.unsqueeze(2))

    def encode_text(self, tokens: Tensor) -> Tensor:
        """tokens [B, context_length] → [B, embed_dim]."""
        return self.text_encoder(tokens)

    def forward(self, frames: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_video(frames), self.encode_text(tokens)


# --- checkpoints -------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a foreign ViCLIP state dict onto our names: the official release needs only the
    DataParallel / torch.compile wrappers stripped."""
    out = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def is_viclip_checkpoint(state_dict: Mapping[str, Tensor]) -> bool:
    return any(key.startswith(("vision_encoder.", "text_encoder.")) for key in state_dict)


def _count_blocks(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _shape(state_dict: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"not a ViCLIP checkpoint: key {key!r} is missing")
    return tuple(state_dict[key].shape)


def infer_fields(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """The config fields the tensor shapes determine (all but the head counts)."""
    vision_width, _, kernel_t, patch, _ = _shape(state_dict, "vision_encoder.conv1.weight")
    if kernel_t != 1:
        raise CheckpointError(f"ViCLIP patchifies frames one by one (temporal kernel 1), not {kernel_t}")
    positions = _shape(state_dict, "vision_encoder.positional_embedding")[0] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"vision positional_embedding has {positions} patch rows, not a square grid")
    vocab_size, text_width = _shape(state_dict, "text_encoder.token_embedding.weight")
    return {
        "embed_dim": _shape(state_dict, "vision_encoder.proj")[1],
        "image_size": grid * patch,
        "patch_size": patch,
        "num_frames": _shape(state_dict, "vision_encoder.temporal_positional_embedding")[1],
        "vision_width": vision_width,
        "vision_layers": _count_blocks(state_dict, "vision_encoder.transformer.resblocks."),
        "context_length": _shape(state_dict, "text_encoder.positional_embedding")[0],
        "vocab_size": vocab_size,
        "text_width": text_width,
        "text_layers": _count_blocks(state_dict, "text_encoder.transformer.resblocks."),
    }
