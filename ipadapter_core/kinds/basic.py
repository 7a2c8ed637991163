"""Basic adapters (standard, light, ViT-G, SDXL): ImageProjModel over pooled image_embeds."""

from __future__ import annotations

from ..projection import ImageProjModel
from .base import ModelKind, context_dim_of, family_of, has_face_lora, shape


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    proj, norm = shape(image_proj, "proj.weight"), shape(image_proj, "norm.weight")
    if proj is None or norm is None or len(proj) != 2 or has_face_lora(ip_adapter):
        return None
    context = norm[0]
    if proj[0] % context or context_dim_of(ip_adapter) != context:
        return None
    tokens, clip_dim = proj[0] // context, proj[1]
    family = family_of(context)
    return ModelKind(
        kind="basic",
        label=f"{'SD1.5' if family == 'sd15' else 'SDXL'} basic",
        family=family,
        context_dim=context,
        tokens=tokens,
        encoder_output="image_embeds",
        encoder_width=clip_dim,
        build=lambda: ImageProjModel(clip_dim, context, tokens),
    )
