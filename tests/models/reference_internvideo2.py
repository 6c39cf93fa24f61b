"""An independent InternVideo2 stage 2 written the way the official code computes it (eval mode).

Explicit softmax attention with the scale on the queries, q/k norms applied on heads flattened back to
the full width, the image position table built by viewing the video table as (frames, patches) and
averaging, the pooling query as the mean token, BERT with a (1 − mask)·−10000 extended mask and
every fusion layer carrying cross-attention. Its state dict has the released file's names, including
what only training uses, so tests can save it as a stand-in for an official checkpoint.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RefRMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))

    def forward(self, x: Tensor) -> Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + 1e-6))


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = RefRMSNorm(dim)
        self.k_norm = RefRMSNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        B_, H_, N_, D_ = q.shape
        q = self.q_norm(q.transpose(1, 2).flatten(-2, -1)).view(B_, N_, H_, D_).transpose(1, 2)
        k = self.k_norm(k.transpose(1, 2).flatten(-2, -1)).view(B_, N_, H_, D_).transpose(1, 2)
        attn = ((q * D_**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class RefLayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(0.5 + torch.rand(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.norm1 = RefRMSNorm(dim)
        self.attn = RefAttention(dim, heads)
        self.ls1 = RefLayerScale(dim)
        self.norm2 = RefRMSNorm(dim)
        self.mlp = RefMlp(dim, hidden, approximate)
        self.ls2 = RefLayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class RefCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.randn(dim) * 0.1)
        self.k_bias = nn.Parameter(torch.randn(dim) * 0.1)
        self.v_bias = nn.Parameter(torch.randn(dim) * 0.1)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        B, N, C = x.shape
        N_k = k.shape[1]
        q = F.linear(x, self.q.weight, self.q_bias).reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        k = F.linear(k, self.k.weight, self.k_bias).reshape(B, N_k, self.num_heads, -1).permute(0, 2, 1, 3)
        v = F.linear(v, self.v.weight, self.v_bias).reshape(B, N_k, self.num_heads, -1).permute(0, 2, 1, 3)
        attn = ((q * (C // self.num_heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


class RefPooling(nn.Module):
    def __init__(self, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = RefCrossAttention(dim, heads, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x_q = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(x_q, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class RefDecoder(nn.Module):
    """Training-only distillation head: present in released files, never run at inference."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, out)
        self.norm = nn.LayerNorm(out)


class RefVision(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        dim, grid, frames = c["vision_width"], c["image_size"] // c["patch_size"], c["num_frames"]
        self.num_frames, self.embed_dim, self.cells = frames, dim, grid * grid
        patch = c["patch_size"]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, dim, (1, patch, patch), (1, patch, patch))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + frames * grid * grid, dim))
        self.clip_pos_embed = nn.Parameter(torch.randn(1, 1 + frames * grid * grid, dim))
        self.sep = c["image_pos_embed"]
        if self.sep:
            self.img_pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim))
            self.clip_img_pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim))
        approximate = c.get("mlp_gelu", "tanh")
        self.blocks = nn.ModuleList(RefBlock(dim, c["vision_heads"], c["mlp_hidden_dim"], approximate)
                                    for _ in range(c["vision_layers"]))
        self.clip_projector = RefPooling(dim, c["pool_heads"], c["clip_embed_dim"])
        self.clip_decoder = nn.ModuleList(RefDecoder(dim, 24) for _ in range(2))
        self.final_clip_decoder = RefDecoder(c["clip_embed_dim"], 16)

    def forward(self, x: Tensor, use_image: bool) -> Tensor:
        x = self.patch_embed.proj(x)
        x = x.flatten(3).permute(0, 2, 3, 1)
        B, T, L, C = x.shape
        x = torch.cat((self.cls_token.expand(B, -1, -1), x.reshape(B, T * L, C)), dim=1)
        if use_image and self.sep:
            pos = self.img_pos_embed
        elif use_image:
            img = self.pos_embed[:, 1:, :].view(1, self.num_frames, self.cells, self.embed_dim).mean(dim=1)
            pos = torch.cat([self.pos_embed[:, 0:1, :], img], dim=1)
        else:
            pos = self.pos_embed
        x = x + pos
        for block in self.blocks:
            x = block(x)
        return self.clip_projector(x)


class RefBertSelf(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor, ext_mask: Tensor) -> Tensor:
        B, N, C = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(B, N, self.heads, -1).permute(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / (C // self.heads) ** 0.5 + ext_mask
        return (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).reshape(B, N, C)


class RefBertOut(nn.Module):
    def __init__(self, din: int, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(din, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class RefBertAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self = RefBertSelf(dim, heads)
        self.output = RefBertOut(dim, dim)


class RefBertLayer(nn.Module):
    def __init__(self, c: dict, fused: bool) -> None:
        super().__init__()
        dim = c["text_width"]
        self.attention = RefBertAttention(dim, c["text_heads"])
        if fused:
            self.crossattention = RefBertAttention(dim, c["text_heads"])
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, c["text_mlp_dim"])
        self.output = RefBertOut(c["text_mlp_dim"], dim)

    def forward(self, x: Tensor, ext_mask: Tensor) -> Tensor:
        a = self.attention.output(self.attention.self(x, ext_mask), x)
        return self.output(F.gelu(self.intermediate.dense(a)), a)


class RefBert(nn.Module):
    def __init__(self, c: dict, total_layers: int) -> None:
        super().__init__()
        dim = c["text_width"]
        self.fusion_layer = c["fusion_layer"]
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(c["vocab_size"], dim)
        self.embeddings.position_embeddings = nn.Embedding(c["max_positions"], dim)
        self.embeddings.token_type_embeddings = nn.Embedding(2, dim)
        self.embeddings.LayerNorm = nn.LayerNorm(dim, eps=1e-12)
        self.embeddings.register_buffer("position_ids", torch.arange(c["max_positions"]).expand((1, -1)))
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(RefBertLayer(c, i >= self.fusion_layer)
                                           for i in range(total_layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        e = self.embeddings
        n = input_ids.shape[1]
        x = e.word_embeddings(input_ids) + e.token_type_embeddings(torch.zeros_like(input_ids))
        x = e.LayerNorm(x + e.position_embeddings(e.position_ids[:, :n]))
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.encoder.layer[: self.fusion_layer]:  # mode="text"
            x = layer(x, ext)
        return x


class RefMaskedLM(nn.Module):
    def __init__(self, c: dict, total_layers: int) -> None:
        super().__init__()
        self.bert = RefBert(c, total_layers)
        self.cls = nn.Module()
        self.cls.predictions = nn.Module()
        self.cls.predictions.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.cls.predictions.transform = nn.Module()
        self.cls.predictions.transform.dense = nn.Linear(c["text_width"], c["text_width"])


class ReferenceStage2(nn.Module):
    """`InternVideo2_Stage2_visual` in test mode: vision_proj(pooled), text_proj(first token)."""

    def __init__(self, c: dict, total_text_layers: int) -> None:
        super().__init__()
        self.vision_encoder = RefVision(c)
        self.text_encoder = RefMaskedLM(c, total_text_layers)
        self.vision_proj = nn.Linear(c["clip_embed_dim"], c["embed_dim"])
        self.text_proj = nn.Linear(c["text_width"], c["embed_dim"])
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(c["text_width"], 2)

    def video(self, frames: Tensor) -> Tensor:  # [B, T, C, H, W]
        use_image = frames.shape[1] == 1
        return self.vision_proj(self.vision_encoder(frames.permute(0, 2, 1, 3, 4), use_image))

    def text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.text_proj(self.text_encoder.bert(input_ids, attention_mask)[:, 0])
