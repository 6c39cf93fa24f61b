"""VideoMAE V2 video transformer (OpenGVLab): the classifier, its blocks and checkpoint mapping.

The module names match the official fine-tuned checkpoints so that they load unchanged; the
contract is in docs/models.md (Model contracts, VideoMAE V2). The pre-training model reuses the
classifier as its encoder; its masks, targets and loss live in `videomae_pretrain.py`.

Sections: config → blocks → classifier → pre-training model → checkpoint filter → config inference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.errors import CheckpointError, ConfigError

LN_EPS = 1e-6
# Layer scale is an initial value only; a checkpoint with gamma parameters overrides it on load.
_LAYER_SCALE_WHEN_INFERRED = 1e-5
_MAY_BE_ZERO = frozenset({"num_classes", "layer_scale_init", "decoder_mlp_hidden"})
_DIVISIBLE = (
    ("image_size", "patch_size"),
    ("num_frames", "tubelet_size"),
    ("width", "heads"),
    ("decoder_width", "decoder_heads"),
)


@dataclass(frozen=True)
class VideoMAEv2Config:
    """Shape of a VideoMAE V2 model; the defaults are ViT-B/16 on 16×224² clips.

    `decoder_*` fields are used by the pre-training model only. `decoder_mlp_hidden == 0` keeps
    the encoder's MLP ratio (the official decoders do), truncated like `int(width * ratio)`.
    """

    image_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_hidden: int = 3072
    num_classes: int = 400
    use_mean_pooling: bool = True
    layer_scale_init: float = 0.0
    decoder_width: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    decoder_mlp_hidden: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value: Any = getattr(self, f.name)
            default: Any = f.default
            if not (type(value) is type(default) or (type(default) is float and type(value) is int)):
                raise ConfigError(
                    f"VideoMAEv2Config.{f.name} must be {type(default).__name__}, got {value!r}"
                )
            if type(default) is not bool and (value < 0 or (value == 0 and f.name not in _MAY_BE_ZERO)):
                raise ConfigError(f"VideoMAEv2Config.{f.name} must be positive, got {value}")
        for name, divisor in _DIVISIBLE:
            if getattr(self, name) % getattr(self, divisor):
                raise ConfigError(
                    f"VideoMAEv2Config.{name}={getattr(self, name)} is not divisible by "
                    f"{divisor}={getattr(self, divisor)}"
                )

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (temporal slots, rows, columns)."""
        side = self.image_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def num_patches(self) -> int:
        """Number of tokens of a full clip (there is no class token)."""
        slots, rows, cols = self.grid
        return slots * rows * cols

    @property
    def patch_dim(self) -> int:
        """Pixels per tubelet, the width of a reconstruction target."""
        return self.in_chans * self.tubelet_size * self.patch_size**2

    @property
    def decoder_mlp(self) -> int:
        """Hidden width of the decoder MLP."""
        return self.decoder_mlp_hidden or int(self.decoder_width * (self.mlp_hidden / self.width))


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """Fixed 1-D position table [1, N, D] in float32, computed in float64 on the CPU.

    Always on the CPU, even under a `torch.device("meta")` context, so that a model built on meta
    and loaded with `assign=True` still has real values in this non-persistent buffer.
    """
    pos = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None]
    j = torch.arange(dim, dtype=torch.float64, device="cpu")
    angle = pos / torch.pow(10000.0, 2.0 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.remainder(2) == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32).unsqueeze(0)


# ---------------------------------------------------------------------------------------------- blocks


class Attention(nn.Module):
    """Multi-head self-attention with a bias on queries and values only (the key bias is zero)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def qkv_bias(self) -> Tensor:
        """The bias of the packed projection: (q_bias, 0, v_bias)."""
        return torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = F.linear(x, self.qkv.weight, self.qkv_bias())
        q, k, v = qkv.reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """fc1 → exact GELU → fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, shared by the encoder and the pre-training decoder."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, layer_scale_init: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_hidden)
        self.gamma_1: nn.Parameter | None = None
        self.gamma_2: nn.Parameter | None = None
        if layer_scale_init > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale_init))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor) -> Tensor:
        if self.gamma_1 is None or self.gamma_2 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Cuts a clip into tubelets (tubelet × p × p) and projects them; tokens come out time-major."""

    def __init__(self, config: VideoMAEv2Config) -> None:
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.expected = (config.in_chans, config.num_frames, config.image_size, config.image_size)
        self.proj = nn.Conv3d(config.in_chans, config.width, kernel_size=kernel, stride=kernel)

    def forward(self, video: Tensor) -> Tensor:
        if video.dim() != 5 or tuple(video.shape[1:]) != self.expected:
            raise ConfigError(
                f"video must be [B, C, T, H, W] with (C, T, H, W) = {self.expected}, got {list(video.shape)}"
            )
        return self.proj(video).flatten(2).transpose(1, 2)


def init_weights(module: nn.Module, *, xavier: bool) -> None:
    """Official initialisation: Linear trunc-normal(0.02) (fine-tuning) or Xavier (pre-training)."""
    if isinstance(module, nn.Linear):
        if xavier:
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ------------------------------------------------------------------------------------------ classifier


class VideoMAEv2(nn.Module):
    """VideoMAE V2 classifier: patch embedding + fixed sinusoid positions → blocks → pooled head."""

    pos_embed: Tensor

    def __init__(self, config: VideoMAEv2Config) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.register_buffer("pos_embed", sinusoid_table(config.num_patches, config.width), persistent=False)
        self.blocks = nn.ModuleList(
            Block(config.width, config.heads, config.mlp_hidden, config.layer_scale_init)
            for _ in range(config.depth)
        )
        norm = partial(nn.LayerNorm, config.width, eps=LN_EPS)
        self.norm: nn.Module = nn.Identity() if config.use_mean_pooling else norm()
        self.fc_norm: nn.Module = norm() if config.use_mean_pooling else nn.Identity()
        self.head: nn.Module = (
            nn.Linear(config.width, config.num_classes) if config.num_classes > 0 else nn.Identity()
        )
        self.apply(partial(init_weights, xavier=False))

    def forward_features(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        """Tokens [B, N, D] after the blocks; `mask` (bool [B, N], True = hidden) drops tokens first."""
        x = self.patch_embed(video) + self.pos_embed.to(dtype=video.dtype, device=video.device)
        if mask is not None:
            x = x[~mask].reshape(x.shape[0], -1, x.shape[2])
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool tokens (mean + fc_norm, or first token + norm), then classify unless `pre_logits`."""
        pooled = self.fc_norm(x.mean(1)) if self.config.use_mean_pooling else self.norm(x[:, 0])
        return pooled if pre_logits else self.head(pooled)

    def features(self, video: Tensor) -> Tensor:
        """Pooled clip features [B, D], the input of the head."""
        return self.forward_head(self.forward_features(video), pre_logits=True)

    def forward(self, video: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(video))


# ------------------------------------------------------------------------------------------ pre-training


def reconstructed_tokens(encoder_mask: Tensor, decoder_mask: Tensor | None) -> Tensor:
    """Tokens the decoder predicts: those hidden from the encoder unless a decoder mask is given
    (True = hidden from the encoder / NOT reconstructed, the official `decode_mask` convention)."""
    return encoder_mask if decoder_mask is None else ~decoder_mask


def _check_masks(encoder_mask: Tensor, decoder_mask: Tensor | None, batch: int, tokens: int) -> Tensor:
    """Validate both masks and return the reconstructed-token mask."""
    for name, mask in (("encoder_mask", encoder_mask), ("decoder_mask", decoder_mask)):
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (batch, tokens)):
            raise ConfigError(f"{name} must be bool [{batch}, {tokens}], got {mask.dtype} {list(mask.shape)}")
    rec = reconstructed_tokens(encoder_mask, decoder_mask)
    for name, counts in (("visible", (~encoder_mask).sum(1)), ("reconstructed", rec.sum(1))):
        if bool((counts != counts[0]).any()):
            raise ConfigError(f"clips of one batch need equal numbers of {name} tokens: {counts.tolist()}")
    return rec


class Decoder(nn.Module):
    """Light transformer that predicts the pixels of the last `n` tokens it is given."""

    def __init__(self, config: VideoMAEv2Config) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(config.decoder_width, config.decoder_heads, config.decoder_mlp, config.layer_scale_init)
            for _ in range(config.decoder_depth)
        )
        self.norm = nn.LayerNorm(config.decoder_width, eps=LN_EPS)
        self.head = nn.Linear(config.decoder_width, config.patch_dim)

    def forward(self, x: Tensor, n: int) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, x.shape[1] - n :]))


class VideoMAEv2Pretrain(nn.Module):
    """Masked autoencoder: the classifier's encoder (+ `encoder.norm`) on the visible tokens, then a
    decoder on those plus mask tokens; keys match the official pre-training checkpoints.
    Masks, targets and the loss are in `vidsearch.models.videomae_pretrain`."""

    pos_embed: Tensor

    def __init__(self, config: VideoMAEv2Config) -> None:
        super().__init__()
        self.config = config
        self.encoder = VideoMAEv2(replace(config, num_classes=0, use_mean_pooling=False))
        self.encoder_to_decoder = nn.Linear(config.width, config.decoder_width, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_width))
        table = sinusoid_table(config.num_patches, config.decoder_width)
        self.register_buffer("pos_embed", table, persistent=False)
        self.decoder = Decoder(config)
        self.apply(partial(init_weights, xavier=True))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def forward(self, video: Tensor, encoder_mask: Tensor, decoder_mask: Tensor | None = None) -> Tensor:
        """Predicted pixels [B, N_rec, in_chans·tubelet·p²] of the reconstructed tokens, in token order."""
        B = video.shape[0]
        rec = _check_masks(encoder_mask, decoder_mask, B, self.config.num_patches)
        visible = self.encoder.norm(self.encoder.forward_features(video, encoder_mask))
        visible = self.encoder_to_decoder(visible)
        D = visible.shape[2]
        pos = self.pos_embed.to(dtype=visible.dtype, device=visible.device).expand(B, -1, -1)
        pos_visible = pos[~encoder_mask].reshape(B, -1, D)
        pos_rec = pos[rec].reshape(B, -1, D)
        x = torch.cat((visible + pos_visible, self.mask_token + pos_rec), dim=1)
        return self.decoder(x, pos_rec.shape[1])


# ----------------------------------------------------------------------------------- checkpoint filter

_WRAPPERS = ("_orig_mod.", "module.", "backbone.")
# Hugging Face `transformers` VideoMAE names → official names, applied in order (all that match).
_HF_RENAMES = (
    (r"^videomae\.embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed.proj."),
    (r"^videomae\.embeddings\.position_embeddings$", "encoder.pos_embed"),
    (r"^videomae\.encoder\.layer\.", "encoder.blocks."),
    (r"^videomae\.layernorm\.", "encoder.norm."),
    (r"^decoder\.decoder_layers\.", "decoder.blocks."),
    (r"^classifier\.", "head."),
    (r"^position_embeddings$", "pos_embed"),
    (r"(blocks\.\d+\.)attention\.attention\.(query|key|value)\.weight$", r"\1attn.qkv.weight#\2"),
    (r"(blocks\.\d+\.)attention\.attention\.(?:query\.bias|q_bias)$", r"\1attn.q_bias"),
    (r"(blocks\.\d+\.)attention\.attention\.(?:value\.bias|v_bias)$", r"\1attn.v_bias"),
    (r"(blocks\.\d+\.)attention\.output\.dense\.", r"\1attn.proj."),
    (r"(blocks\.\d+\.)intermediate\.dense\.", r"\1mlp.fc1."),
    (r"(blocks\.\d+\.)output\.dense\.", r"\1mlp.fc2."),
    (r"(blocks\.\d+\.)layernorm_before\.", r"\1norm1."),
    (r"(blocks\.\d+\.)layernorm_after\.", r"\1norm2."),
)


def _rename(key: str, *, pretrain: bool) -> str:
    """One key from any supported source to our name (query/key/value weights marked for packing)."""
    while key.startswith(_WRAPPERS):
        key = key[next(len(w) for w in _WRAPPERS if key.startswith(w)) :]
    for pattern, target in _HF_RENAMES:
        key = re.sub(pattern, target, key)
    return key[len("encoder.") :] if not pretrain and key.startswith("encoder.") else key


def _check_pos_table(key: str, table: Tensor) -> None:
    """A stored position table must be the fixed sinusoid one; learnable embeddings are not supported."""
    rows, dim = table.shape[-2], table.shape[-1]
    expected = sinusoid_table(rows, dim)[0]
    stored = table.detach().to("cpu", torch.float32).reshape(rows, dim)
    if not torch.allclose(stored, expected, rtol=0.0, atol=5e-3):
        raise CheckpointError(
            f"checkpoint entry {key!r} is not the fixed sinusoid position table "
            "(learnable position embeddings are not supported)"
        )


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], *, pretrain: bool) -> dict[str, Tensor]:
    """Map an official, wrapped or Hugging Face VideoMAE state dict onto our keys.

    Strips `_orig_mod.`/`module.`/`backbone.` (and `encoder.` for the classifier), renames
    `transformers` names and packs their q/k/v into `qkv`, checks and drops stored sinusoid tables.
    Keys it does not know pass through unchanged so the loader can report them.
    """
    out: dict[str, Tensor] = {}
    packed: dict[str, dict[str, Tensor]] = {}
    for raw_key, value in state_dict.items():
        key = _rename(raw_key, pretrain=pretrain)
        if key.rsplit(".", 1)[-1] in ("pos_embed", "position_embeddings") and value.dim() in (2, 3):
            _check_pos_table(raw_key, value)
        elif "#" in key:
            name, part = key.split("#")
            packed.setdefault(name, {})[part] = value
        else:
            out[key] = value
    for name, parts in packed.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"checkpoint has only {sorted(parts)} of query/key/value for {name!r}")
        out[name] = torch.cat((parts["query"], parts["key"], parts["value"]), dim=0)
    return out


def is_pretrain_checkpoint(state_dict: Mapping[str, Tensor]) -> bool:
    """True for a pre-training (encoder + decoder) checkpoint, by its telltale projection."""
    return any(key.endswith("encoder_to_decoder.weight") for key in state_dict)


# ----------------------------------------------------------------------------------- config inference


def _depth(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    indices = {int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def infer_fields(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """The config fields a filtered state dict's shapes determine.

    Not heads, frames or image size (nothing stores them); for a pre-training checkpoint not the
    head fields either. The decoder MLP width is 0 ("encoder ratio") when it follows that ratio.
    """
    prefix = "encoder." if is_pretrain_checkpoint(state_dict) else ""
    proj = state_dict.get(prefix + "patch_embed.proj.weight")
    fc1 = state_dict.get(prefix + "blocks.0.mlp.fc1.weight")
    qkv = state_dict.get(prefix + "blocks.0.attn.qkv.weight")
    if proj is None or proj.dim() != 5 or fc1 is None or qkv is None:
        raise CheckpointError(
            "state dict does not look like VideoMAE V2: no 5-D "
            f"{prefix}patch_embed.proj.weight or {prefix}blocks.0 attention/MLP weights"
        )
    width, in_chans, tubelet_size, patch_size = proj.shape[:4]
    values: dict[str, Any] = {"width": width, "in_chans": in_chans, "tubelet_size": tubelet_size}
    values["patch_size"], values["mlp_hidden"] = patch_size, fc1.shape[0]
    values["depth"] = _depth(state_dict, prefix + "blocks.")
    has_gamma = prefix + "blocks.0.gamma_1" in state_dict
    values["layer_scale_init"] = _LAYER_SCALE_WHEN_INFERRED if has_gamma else 0.0
    if prefix:
        decoder_width = values["decoder_width"] = state_dict["encoder_to_decoder.weight"].shape[0]
        values["decoder_depth"] = _depth(state_dict, "decoder.blocks.")
        decoder_fc1 = state_dict.get("decoder.blocks.0.mlp.fc1.weight")
        decoder_mlp = 0 if decoder_fc1 is None else decoder_fc1.shape[0]
        values["decoder_mlp_hidden"] = (
            0 if decoder_mlp == int(decoder_width * (fc1.shape[0] / width)) else decoder_mlp
        )
    else:
        head = state_dict.get("head.weight")
        values["num_classes"] = 0 if head is None else head.shape[0]
        values["use_mean_pooling"] = "fc_norm.weight" in state_dict
    return values
