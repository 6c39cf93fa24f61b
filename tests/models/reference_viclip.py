"""An independent ViCLIP written the way the official InternVid code computes it.

Sequence-first `nn.MultiheadAttention`, the class token prepended per frame and then cut back to
one, the temporal embedding added in a (batch·patch, time) layout, an explicit −inf causal mask.
Only the tests use it: it checks that vidsearch's batch-first rewrite gives the official numbers.
"""

import torch
from torch import Tensor, nn


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, attn_mask: Tensor | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.attn_mask)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask: Tensor | None = None) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resblocks(x)


class ReferenceVision(nn.Module):
    def __init__(self, size: int, patch: int, width: int, layers: int, heads: int, out: int, frames: int):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.randn(1, frames, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out))

    def forward(self, x: Tensor) -> Tensor:  # x: B, C, T, H, W
        x = self.conv1(x)
        B, C, T, H, W = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, C)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        cls_tokens = x[:B, :1, :]
        x = x[:, 1:]
        x = x.reshape(B, T, H * W, C).permute(0, 2, 1, 3).reshape(B * H * W, T, C)  # (b n) t m
        if T == 1:
            x = x + self.temporal_positional_embedding.mean(1)
        else:
            x = x + self.temporal_positional_embedding
        x = x.reshape(B, H * W * T, C)  # b (n t) m
        x = torch.cat([cls_tokens, x], dim=1)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.ln_post(self.transformer(x))
        return x[0] @ self.proj


class ReferenceText(nn.Module):
    def __init__(self, context: int, vocab: int, width: int, layers: int, heads: int, out: int):
        super().__init__()
        mask = torch.full((context, context), float("-inf")).triu_(1)
        self.transformer = _Transformer(width, layers, heads, attn_mask=mask)
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(context, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, out))

    def forward(self, text: Tensor) -> Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


class ReferenceViCLIP(nn.Module):
    def __init__(self, **c: int) -> None:
        super().__init__()
        self.temp = nn.Parameter(torch.ones([]) * 0.01)
        self.vision_encoder = ReferenceVision(
            c["image_size"], c["patch_size"], c["vision_width"], c["vision_layers"], c["vision_heads"],
            c["embed_dim"], c["num_frames"],
        )  # fmt: skip
        self.text_encoder = ReferenceText(
            c["context_length"], c["vocab_size"], c["text_width"], c["text_layers"], c["text_heads"],
            c["embed_dim"],
        )  # fmt: skip

    def encode_vision(self, image: Tensor) -> Tensor:
        image = image.permute(0, 2, 1, 3, 4) if image.ndim == 5 else image.unsqueeze(2)
        return self.vision_encoder(image)
