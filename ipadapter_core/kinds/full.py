"""Full-face adapters: a token-wise MLP over every CLIP hidden state (257 tokens)."""

from __future__ import annotations

from ..projection import MLPProjModel
from .base import ModelKind, context_dim_of, family_of, shape


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    first, last, norm = (shape(image_proj, f"proj.{i}.weight") for i in (0, 2, 3))
    if first is None or last is None or norm is None or first[0] != first[1]:
        return None
    clip_dim, context = first[1], last[0]
    if context_dim_of(ip_adapter) != context:
        return None
    family = family_of(context)
    return ModelKind(
        kind="full_face",
        label=f"{'SD1.5' if family == 'sd15' else 'SDXL'} full face",
        family=family,
        context_dim=context,
        tokens=257,
        encoder_output="penultimate_hidden_states",
        encoder_width=clip_dim,
        build=lambda: MLPProjModel(clip_dim, context),
    )
