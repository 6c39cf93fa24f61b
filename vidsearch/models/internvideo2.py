"""InternVideo2 stage 2 (OpenGVLab): a 1B/6B video ViT and BERT-large aligned in one joint space.

Parameter names follow the released stage-2 files (`{'model': sd}`), so they load unchanged once the
keys that only training uses are dropped (`checkpoint_filter_fn`). The facts that decide the numbers:
- vision: Conv3d patch embedding with bias (tubelet 1), tokens ordered time-major, one class token,
  a learned position table over 1 + T·grid² rows (for one frame: `img_pos_embed` where the checkpoint
  has one, else the class row and the video rows averaged over time); pre-norm blocks with RMSNorm
  (eps 1e-6), queries and keys RMS-normalised over the full width, no qkv bias, layer scale; no norm
  after the last block; an attention-pooling projector (query = mean of all tokens, LayerNorm eps
  1e-5, q/k/v biases) to `clip_embed_dim`, then `vision_proj`;
- MLP activation: the released models ran flash-attn's FusedMLP, whose GELU is the tanh
  approximation (`mlp_gelu="tanh"`); the official code without flash-attn uses the exact GELU
  ("none"). The difference is ~1e-3 per activation; both are offered, the release's is the default;
- text: BERT (post-norm, eps 1e-12, exact GELU); text mode runs only the first `fusion_layer` layers
  (the later ones fuse video through cross-attention and are not part of this model); padding
  (id 0) is masked with −10000 added to the scores, as the official code does; the first token's
  state goes through `text_proj`.
Layout: config → blocks → towers → model → checkpoint filter → config inference.
"""

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

RMS_NORM_EPS = 1e-6
POOL_NORM_EPS = 1e-5
BERT_NORM_EPS = 1e-12
MASKED_SCORE = -10000.0  # what BERT adds to the attention scores of padding tokens
PAD_TOKEN = 0

GeluKind = Literal["tanh", "none"]


@dataclass(frozen=True)
class InternVideo2Config:
    """Every dimension of InternVideo2 stage 2; the defaults are the released 1B model."""

    embed_dim: int = 512  # the joint video–text space
    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 4
    vision_width: int = 1408
    vision_layers: int = 40
    vision_heads: int = 16
    mlp_hidden_dim: int = 6144  # 1408 · 48/11
    mlp_gelu: GeluKind = "tanh"
    image_pos_embed: bool = True  # a separate one-frame table (`img_pos_embed`) in the checkpoint
    clip_embed_dim: int = 768  # the attention-pooling projector's output
    pool_heads: int = 16
    vocab_size: int = 30522
    context_length: int = 40  # tokens a query is padded or cut to
    max_positions: int = 512  # rows of BERT's position table
    type_vocab_size: int = 2
    text_width: int = 1024
    fusion_layer: int = 19  # BERT layers text mode runs
    text_heads: int = 16
    text_mlp_dim: int = 4096

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size "
                              f"{self.patch_size}")
        for name, width, heads in (
            ("vision", self.vision_width, self.vision_heads),
            ("pool", self.vision_width, self.pool_heads),
            ("text", self.text_width, self.text_heads),
        ):
            if heads <= 0 or width % heads:
                raise ConfigError(f"InternVideo2: width {width} is not divisible by {name}_heads {heads}")
        if self.mlp_gelu not in ("tanh", "none"):
            raise ConfigError(f"InternVideo2: mlp_gelu must be 'tanh' or 'none', got {self.mlp_gelu!r}")
        if self.context_length > self.max_positions:
            raise ConfigError(f"InternVideo2: context_length {self.context_length} exceeds the "
                              f"{self.max_positions} rows of the text position table")
        sizes = (self.embed_dim, self.num_frames, self.mlp_hidden_dim, self.clip_embed_dim, self.vocab_size,
                 self.context_length, self.type_vocab_size, self.fusion_layer, self.text_mlp_dim)
        if min(sizes) <= 0:
            raise ConfigError(f"InternVideo2 sizes must be positive: {self}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


# --- vision blocks -----------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) · weight, computed in float32 (the official norm's habit under mixed precision).

    Written as a division by the square root, not a product with `rsqrt` (the official form, equal to
    ~1 ulp): exported at any opset, that is the pattern ONNX Runtime fuses into one
    SimplifiedLayerNormalization kernel; the `rsqrt` form stays six elementwise passes."""

    def __init__(self, width: int, eps: float = RMS_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        normed = x.float() / torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Self-attention with packed q;k;v (no bias) and queries/keys RMS-normalised over all heads."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm = RMSNorm(width)
        self.k_norm = RMSNorm(width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.view(batch, tokens, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, gelu: GeluKind) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate=gelu)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        width = config.vision_width
        self.norm1 = RMSNorm(width)
        self.attn = Attention(width, config.vision_heads)
        self.ls1 = LayerScale(width)
        self.norm2 = RMSNorm(width)
        self.mlp = Mlp(width, config.mlp_hidden_dim, config.mlp_gelu)
        self.ls2 = LayerScale(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PoolingAttention(nn.Module):
    """One query attending over all tokens; separate q/k/v weights with free-standing biases."""

    def __init__(self, width: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.k_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, out_dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        batch, tokens, width = key.shape
        q = F.linear(query, self.q.weight, self.q_bias).view(batch, 1, self.heads, -1).transpose(1, 2)
        k = F.linear(key, self.k.weight, self.k_bias).view(batch, tokens, self.heads, -1).transpose(1, 2)
        v = F.linear(value, self.v.weight, self.v_bias).view(batch, tokens, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, width))


class AttentionPool(nn.Module):
    """The `clip_projector`: the mean token asks, every token answers."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        width = config.vision_width
        self.norm1_q = nn.LayerNorm(width, eps=POOL_NORM_EPS)
        self.norm1_k = nn.LayerNorm(width, eps=POOL_NORM_EPS)
        self.norm1_v = nn.LayerNorm(width, eps=POOL_NORM_EPS)
        self.cross_attn = PoolingAttention(width, config.pool_heads, config.clip_embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        query = self.norm1_q(x.mean(dim=1))
        return self.cross_attn(query, self.norm1_k(x), self.norm1_v(x))


class PatchEmbed(nn.Module):
    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        patch = config.patch_size
        self.proj = nn.Conv3d(3, config.vision_width, kernel_size=(1, patch, patch), stride=(1, patch, patch))

    def forward(self, video: Tensor) -> Tensor:
        """[B, 3, T, H, W] → [B, T·grid², C], time-major."""
        return self.proj(video).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """The vision encoder up to the pooled `clip_embed_dim` feature."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        width, cells = config.vision_width, config.grid**2
        self.num_frames = config.num_frames
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_frames * cells, width))
        self.img_pos_embed = (nn.Parameter(torch.zeros(1, 1 + cells, width)) if config.image_pos_embed
                              else None)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.vision_layers))
        self.clip_projector = AttentionPool(config)

    def _position_table(self, frames: int) -> Tensor:
        if frames == self.num_frames:
            return self.pos_embed
        if frames != 1:
            raise ConfigError(f"InternVideo2 takes {self.num_frames} frames (or 1, an image); got {frames}")
        if self.img_pos_embed is not None:
            return self.img_pos_embed
        width = self.pos_embed.shape[-1]
        patches = self.pos_embed[:, 1:].reshape(1, self.num_frames, -1, width).mean(dim=1)
        return torch.cat([self.pos_embed[:, :1], patches], dim=1)

    def forward(self, video: Tensor) -> Tensor:
        """video [B, 3, T, H, W] → [B, clip_embed_dim]."""
        x = self.patch_embed(video)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self._position_table(video.shape[2])
        for block in self.blocks:
            x = block(x)
        return self.clip_projector(x)


# --- text --------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        width = config.text_width
        self.word_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=PAD_TOKEN)
        self.position_embeddings = nn.Embedding(config.max_positions, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=BERT_NORM_EPS)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ConfigError(f"InternVideo2: {length} tokens exceed the "
                              f"{self.position_embeddings.num_embeddings} rows of the text position table")
        x = self.word_embeddings(tokens) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x + self.position_embeddings.weight[:length])


class BertSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def forward(self, x: Tensor, score_bias: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        q, k, v = (p(x).view(batch, tokens, self.heads, -1).transpose(1, 2)
                   for p in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=score_bias)
        return out.transpose(1, 2).reshape(batch, tokens, width)


class BertResidualOutput(nn.Module):
    """dense → + residual → LayerNorm (BERT is post-norm)."""

    def __init__(self, width_in: int, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=BERT_NORM_EPS)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.self = BertSelfAttention(width, heads)
        self.output = BertResidualOutput(width, width)

    def forward(self, x: Tensor, score_bias: Tensor) -> Tensor:
        return self.output(self.self(x, score_bias), x)


class BertIntermediate(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.attention = BertAttention(config.text_width, config.text_heads)
        self.intermediate = BertIntermediate(config.text_width, config.text_mlp_dim)
        self.output = BertResidualOutput(config.text_mlp_dim, config.text_width)

    def forward(self, x: Tensor, score_bias: Tensor) -> Tensor:
        x = self.attention(x, score_bias)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.fusion_layer))


class Bert(nn.Module):
    """BERT in text mode: embeddings and the layers below `fusion_layer`; padding is masked."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, L] (padding 0) → hidden states [B, L, text_width]."""
        x = self.embeddings(tokens)
        keep = (tokens != PAD_TOKEN).to(x.dtype)
        # one row per query, not one broadcast row: ONNX Runtime's Attention (opset 23) refuses a
        # mask whose query axis is 1 ("inconsistent q_sequence_length")
        score_bias = ((1.0 - keep) * MASKED_SCORE)[:, None, None, :].expand(-1, -1, tokens.shape[1], -1)
        for layer in self.encoder.layer:
            x = layer(x, score_bias)
        return x


class TextEncoder(nn.Module):
    """Holds BERT under `bert`, the name the released files use (BertForMaskedLM's)."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.bert = Bert(config)


# --- model -------------------------------------------------------------------------------------


class InternVideo2(nn.Module):
    """Video and text into one space (ViCLIP's interface). Outputs are not normalised."""

    def __init__(self, config: InternVideo2Config) -> None:
        super().__init__()
        self.config = config
        self.vision_encoder = VisionTransformer(config)
        self.text_encoder = TextEncoder(config)
        self.vision_proj = nn.Linear(config.clip_embed_dim, config.embed_dim)
        self.text_proj = nn.Linear(config.text_width, config.embed_dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear and embedding weights, as the official code starts from;
        loading a checkpoint overwrites them."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding | nn.Conv3d):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear | nn.Conv3d) and module.bias is not None:
                nn.init.zeros_(module.bias)
        vision = self.vision_encoder
        for table in (vision.cls_token, vision.pos_embed, vision.img_pos_embed):
            if table is not None:
                nn.init.trunc_normal_(table, std=0.02)

    def encode_video(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] → [B, embed_dim]."""
        return self.vision_proj(self.vision_encoder(frames.permute(0, 2, 1, 3, 4)))

    def encode_image(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] → [B, embed_dim]: a clip of one frame."""
        return self.vision_proj(self.vision_encoder(images.unsqueeze(2)))

    def encode_text(self, tokens: Tensor) -> Tensor:
        """tokens [B, L] (WordPiece ids, [CLS] first, padding 0) → [B, embed_dim]."""
        return self.text_proj(self.text_encoder.bert(tokens)[:, 0])

    def forward(self, frames: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_video(frames), self.encode_text(tokens)


# --- checkpoints -------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# What the released stage-2 files hold for training only (distillation decoders and their position
# tables, the matching and MLM heads, the temperature), and the 6B audio-visual model's audio branch.
_TRAINING_ONLY = re.compile(
    r"vision_encoder\.(clip_decoder|final_clip_decoder)\."
    r"|vision_encoder\.(clip_pos_embed|clip_img_pos_embed)$"
    r"|(itm_head|atm_head|avtm_head|audio_encoder|audio_proj|av_concat_vision_proj|av_concat_audio_proj"
    r"|av_fusion)\."
    r"|temp$"
    r"|text_encoder\.cls\."
    r"|text_encoder\.bert\.embeddings\.position_ids$"
)
_BERT_LAYER = re.compile(r"text_encoder\.bert\.encoder\.layer\.(\d+)\.")


def fusion_layer_of(state_dict: Mapping[str, Tensor]) -> int:
    """The first BERT layer with cross-attention (text mode stops before it); all layers if none has."""
    layers: dict[int, bool] = {}
    for key in state_dict:
        if (m := _BERT_LAYER.match(key)) is not None:
            index = int(m.group(1))
            layers[index] = layers.get(index, False) or ".crossattention." in key
    fused = [index for index, cross in layers.items() if cross]
    return min(fused) if fused else len(layers)


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip wrappers, then drop (with one log line naming them) the keys video–text retrieval never
    reads: training-only modules and the BERT layers at or past `fusion_layer`."""
    unwrapped = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        unwrapped[key] = value
    fusion = fusion_layer_of(unwrapped)
    kept: dict[str, Tensor] = {}
    dropped: dict[str, int] = {}
    for key, value in unwrapped.items():
        layer = _BERT_LAYER.match(key)
        if layer and int(layer.group(1)) >= fusion:
            group = f"text_encoder.bert.encoder.layer.{fusion}+ (fusion layers)"
        elif (found := _TRAINING_ONLY.match(key)) is not None:
            group = found.group(0)
            group = group + "*" if group.endswith(".") else group
        else:
            kept[key] = value
            continue
        dropped[group] = dropped.get(group, 0) + 1
    if dropped:
        listing = ", ".join(f"{group} ({count})" for group, count in sorted(dropped.items()))
        log.info("InternVideo2 checkpoint: dropping %d tensors retrieval does not use: %s",
                 sum(dropped.values()), listing)
    return kept


def is_internvideo2_checkpoint(state_dict: Mapping[str, Tensor]) -> bool:
    return any(key.startswith(("vision_encoder.patch_embed.", "text_encoder.bert.")) for key in state_dict)


def _shape(state_dict: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"not an InternVideo2 stage-2 checkpoint: key {key!r} is missing")
    return tuple(state_dict[key].shape)


def _count(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_fields(state_dict: Mapping[str, Tensor]) -> dict[str, int | bool]:
    """The config fields the (filtered) tensor shapes determine: all but the head counts, the frame
    count of a checkpoint without an image table (taken with the preset's image size) and `mlp_gelu`."""
    width, _, kernel_t, patch, _ = _shape(state_dict, "vision_encoder.patch_embed.proj.weight")
    if kernel_t != 1:
        raise CheckpointError(f"InternVideo2 stage 2 embeds frames one by one (tubelet 1), not {kernel_t}")
    fields: dict[str, int | bool] = {"patch_size": patch, "vision_width": width}
    image_rows = state_dict.get("vision_encoder.img_pos_embed")
    fields["image_pos_embed"] = image_rows is not None
    if image_rows is not None:
        cells = image_rows.shape[1] - 1
        grid = math.isqrt(cells)
        if grid * grid != cells:
            raise CheckpointError(f"InternVideo2 img_pos_embed has {cells} patch rows, not a square grid")
        video_rows = _shape(state_dict, "vision_encoder.pos_embed")[1] - 1
        if video_rows % cells:
            raise CheckpointError(f"InternVideo2 pos_embed's {video_rows} patch rows are not frames of "
                                  f"{cells} patches")
        fields.update(image_size=grid * patch, num_frames=video_rows // cells)
    vocab_size, text_width = _shape(state_dict, "text_encoder.bert.embeddings.word_embeddings.weight")
    fields.update(
        vision_layers=_count(state_dict, "vision_encoder.blocks."),
        mlp_hidden_dim=_shape(state_dict, "vision_encoder.blocks.0.mlp.fc1.weight")[0],
        clip_embed_dim=_shape(state_dict, "vision_encoder.clip_projector.cross_attn.proj.weight")[0],
        embed_dim=_shape(state_dict, "vision_proj.weight")[0],
        vocab_size=vocab_size,
        text_width=text_width,
        max_positions=_shape(state_dict, "text_encoder.bert.embeddings.position_embeddings.weight")[0],
        type_vocab_size=_shape(state_dict, "text_encoder.bert.embeddings.token_type_embeddings.weight")[0],
        fusion_layer=_count(state_dict, "text_encoder.bert.encoder.layer."),
        text_mlp_dim=_shape(state_dict, "text_encoder.bert.encoder.layer.0.intermediate.dense.weight")[0],
    )
    return fields
