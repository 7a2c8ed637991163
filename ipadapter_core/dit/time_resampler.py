"""SD3.5 InstantX projection: a perceiver resampler whose layers are modulated by the diffusion timestep.

The tokens depend on t, so the host runs this once per model call (not once per apply). Parameter names
are the published ``image_proj`` keys (dit-adapters.md §2.3), so the section loads with ``strict=True``:

``layers.{l}.0`` perceiver attention (norm1, norm2, to_q, to_kv, to_out), ``layers.{l}.1`` feed-forward
(LayerNorm, Linear, GELU, Linear), ``layers.{l}.2`` adaLN (SiLU, Linear(dim -> 4*dim)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..projection import PerceiverAttention, feed_forward

DIM_HEAD = 64  # every published file and diffusers' converter use 64-wide resampler heads


def timestep_features(timesteps: torch.Tensor, channels: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of ``timesteps`` [B] -> [B, channels], cosines first, in float32.

    Frequencies ``max_period ** (-i / half)`` for i < half (no frequency shift); an odd width gets a zero column.
    """
    half = channels // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    angles = timesteps.float()[:, None] * freqs[None, :]
    out = torch.cat((torch.cos(angles), torch.sin(angles)), dim=-1)
    if channels % 2:
        out = torch.nn.functional.pad(out, (0, 1))
    return out


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on the sinusoidal features (keys ``time_embedding.linear_1/2``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class ModulatedPerceiverAttention(PerceiverAttention):
    """PerceiverAttention whose normalised latents are shifted/scaled by the timestep before q and kv."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, latents: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents) * (1 + scale[:, None]) + shift[:, None]
        q = self._heads(self.to_q(latents))
        k, v = self.to_kv(torch.cat((x, latents), dim=1)).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        s = self.dim_head**-0.25  # on q and k each: keeps fp16 scores small
        scores = (q * s) @ (k * s).transpose(-2, -1)
        attn = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
        out = (attn @ v).transpose(1, 2)
        return self.to_out(out.reshape(out.shape[0], out.shape[1], -1))


class TimeResampler(nn.Module):
    """SigLIP hidden states [B, L, embedding_dim] + timestep -> (tokens [B, num_queries, output_dim], temb [B, dim]).

    ``depth``, ``heads`` and ``ff_mult`` are free so a detector can read them from the tensors; the published
    SD3.5-Large adapter is ``TimeResampler(1280, 4, 20, 64, 1152, 2432)``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        num_queries: int,
        embedding_dim: int,
        output_dim: int,
        ff_mult: int = 4,
        timestep_in_dim: int = 320,
        dim_head: int = DIM_HEAD,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.timestep_in_dim = timestep_in_dim
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    ModulatedPerceiverAttention(dim, dim_head, heads),
                    feed_forward(dim, ff_mult),
                    nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim)),
                ]
            )
            for _ in range(depth)
        )
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.time_embedding = TimestepMLP(timestep_in_dim, dim)

    def embed_timestep(self, timestep: torch.Tensor | float, batch: int) -> torch.Tensor:
        """temb [batch, dim]; a scalar or one-element ``timestep`` is shared by every row."""
        weight = self.time_embedding.linear_1.weight
        t = torch.as_tensor(timestep, device=weight.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        elif t.numel() != batch:
            raise ValueError(f"timestep has {t.numel()} values for a batch of {batch} rows; give 1 or {batch}")
        return self.time_embedding(timestep_features(t, self.timestep_in_dim).to(weight.dtype))

    def forward(self, features: torch.Tensor, timestep: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``timestep`` in model-time units (sigma * 1000 for SD3's flow sampling), [B] or a scalar."""
        features = features.to(self.proj_in.weight.dtype)
        batch = features.shape[0]
        temb = self.embed_timestep(timestep, batch)
        x = self.proj_in(features) + temb[:, None]
        latents = self.latents.expand(batch, -1, -1)
        for attn, ff, ada in self.layers:
            shift_a, scale_a, shift_m, scale_m = ada(temb).chunk(4, dim=-1)
            latents = attn(x, latents, shift_a, scale_a) + latents
            normed = ff[0](latents) * (1 + scale_m[:, None]) + shift_m[:, None]
            latents = ff[1:](normed) + latents
        return self.norm_out(self.proj_out(latents)), temb
