"""Projection models: encoder output -> image tokens in the UNet's context space.

Parameter names follow the published IP-Adapter files exactly, so their ``image_proj`` section
loads with ``load_state_dict(strict=True)`` and no renaming.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageProjModel(nn.Module):
    """Basic adapters: one pooled CLIP embedding -> ``tokens`` context tokens."""

    def __init__(self, clip_dim: int, context_dim: int, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.context_dim = context_dim
        self.proj = nn.Linear(clip_dim, tokens * context_dim)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = self.proj(embeds).reshape(-1, self.tokens, self.context_dim)
        return self.norm(x)


class MLPProjModel(nn.Module):
    """Full-face adapters: every CLIP hidden token mapped to one context token."""

    def __init__(self, clip_dim: int, context_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(clip_dim, clip_dim), nn.GELU(), nn.Linear(clip_dim, context_dim), nn.LayerNorm(context_dim)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


class PerceiverAttention(nn.Module):
    """Latents attend to (inputs ++ latents); q and k are both scaled by dim_head^-1/4."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self._heads(self.to_q(latents))
        k, v = self.to_kv(torch.cat((x, latents), dim=1)).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        scale = self.dim_head**-0.25
        scores = (q * scale) @ (k * scale).transpose(-2, -1)
        attn = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
        out = (attn @ v).transpose(1, 2)
        return self.to_out(out.reshape(out.shape[0], out.shape[1], -1))


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(), nn.Linear(dim * mult, dim, bias=False)
    )


class PerceiverStack(nn.Module):
    """The layer stack shared by the Resampler and the FaceID perceiver."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)]) for _ in range(depth)
        )

    def run_layers(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return latents


class Resampler(PerceiverStack):
    """Plus adapters: learned queries over CLIP hidden states."""

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int,
        heads: int,
        num_queries: int,
        embedding_dim: int,
        output_dim: int,
        ff_mult: int = 4,
    ) -> None:
        super().__init__(dim, depth, dim_head, heads, ff_mult)
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.repeat(x.shape[0], 1, 1)
        latents = self.run_layers(self.proj_in(x), latents)
        return self.norm_out(self.proj_out(latents))


class FacePerceiverResampler(PerceiverStack):
    """FaceID-Plus: the ID tokens are the latents, refined by CLIP features of the face."""

    def __init__(
        self, dim: int, depth: int, dim_head: int, heads: int, embedding_dim: int, output_dim: int, ff_mult: int = 4
    ) -> None:
        super().__init__(dim, depth, dim_head, heads, ff_mult)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)

    def forward(self, latents: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        latents = self.run_layers(self.proj_in(x), latents)
        return self.norm_out(self.proj_out(latents))


class MLPProjModelFaceId(nn.Module):
    """FaceID and Portrait: a 512-d face embedding -> ``tokens`` context tokens."""

    def __init__(self, context_dim: int, id_dim: int, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.context_dim = context_dim
        self.proj = nn.Sequential(
            nn.Linear(id_dim, id_dim * 2), nn.GELU(), nn.Linear(id_dim * 2, context_dim * tokens)
        )
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, face_embeds: torch.Tensor) -> torch.Tensor:
        x = self.proj(face_embeds).reshape(-1, self.tokens, self.context_dim)
        return self.norm(x)


class ProjModelFaceIdPlus(nn.Module):
    """FaceID-Plus (v1/v2) and Kolors FaceID: ID tokens refined by a perceiver over CLIP features.

    With ``shortcut`` (v2) the result is ``id_tokens + clip_weight * perceiver(...)``, so the CLIP
    weight moves the output along the CLIP branch only; at weight 0 only the ID tokens remain.
    """

    def __init__(self, context_dim: int, id_dim: int, clip_dim: int, tokens: int, hidden_mult: int = 2,
                 depth: int = 4, heads: int | None = None, ff_mult: int = 4) -> None:
        super().__init__()
        self.tokens = tokens
        self.context_dim = context_dim
        self.proj = nn.Sequential(
            nn.Linear(id_dim, id_dim * hidden_mult), nn.GELU(), nn.Linear(id_dim * hidden_mult, context_dim * tokens)
        )
        self.norm = nn.LayerNorm(context_dim)
        self.perceiver_resampler = FacePerceiverResampler(
            dim=context_dim, depth=depth, dim_head=64, heads=heads or context_dim // 64, embedding_dim=clip_dim,
            output_dim=context_dim, ff_mult=ff_mult,
        )

    def forward(
        self, face_embeds: torch.Tensor, clip_embeds: torch.Tensor, clip_weight: float = 1.0, shortcut: bool = False
    ) -> torch.Tensor:
        x = self.norm(self.proj(face_embeds).reshape(-1, self.tokens, self.context_dim))
        out = self.perceiver_resampler(x, clip_embeds)
        return x + clip_weight * out if shortcut else out
