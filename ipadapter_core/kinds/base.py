"""What a model kind is: a descriptor produced by a family module's ``detect``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL", "kolors": "Kolors", "flux": "Flux.1", "sd3": "SD3.5"}

# How an adapter reaches its model: "unet" = attn2 replace patches; the others are transformers whose
# blocks get scoped hooks (nodes/dit_hooks.py).
ARCHES = ("unet", "flux", "mmdit")


@dataclass(frozen=True)
class ModelKind:
    """Everything the pack needs to know about an adapter file, read from its tensors.

    ``encoder_output`` is the CLIP vision output the projection consumes ("image_embeds",
    "penultimate_hidden_states", or "siglip_pooled" for SigLIP's attention-pooled vector; None for
    plain FaceID/Portrait, which only need a face embedding) and ``encoder_width`` its last dimension.

    Transformer kinds (``arch`` "flux" or "mmdit") also carry ``hidden``, the model width their
    K/V produce, and ``blocks``, how many per-block K/V entries the file holds; ``context_dim`` is
    then the width of the image tokens.
    """

    kind: str
    label: str
    family: str
    context_dim: int
    tokens: int
    encoder_output: str | None
    encoder_width: int | None
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    face: bool = False
    face_embedding: str | None = None  # "normed" or "raw" for FaceID kinds
    needs_lora: bool = False
    plus_v2_possible: bool = False  # FaceID-Plus: v1 and v2 share a layout
    shortcut: bool = False  # Kolors FaceID always uses the v2 shortcut
    image_size: int = 224
    arch: str = "unet"
    hidden: int | None = None
    blocks: int = 0

    @property
    def is_transformer(self) -> bool:
        return self.arch != "unet"

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)

    @property
    def uses_hidden_states(self) -> bool:
        return self.encoder_output == "penultimate_hidden_states"


def shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    t = sd.get(key)
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def context_dim_of(ip_adapter: dict[str, torch.Tensor]) -> int | None:
    """The UNet context width the adapter's K/V projections read (768 SD1.5, 2048 SDXL/Kolors)."""
    s = shape(ip_adapter, "1.to_k_ip.weight")
    return s[1] if s else None


def perceiver_shape(image_proj: dict[str, torch.Tensor], prefix: str, dim: int) -> tuple[int, int, int]:
    """(depth, heads, ff_mult) of a perceiver stack under ``prefix``, read from its tensors (64-wide heads)."""
    depth = sum(1 for k in image_proj if k.startswith(f"{prefix}layers.") and k.endswith(".0.to_q.weight"))
    to_q = shape(image_proj, f"{prefix}layers.0.0.to_q.weight")
    ff_inner = shape(image_proj, f"{prefix}layers.0.1.1.weight")
    return depth, (to_q[0] // 64 if to_q else 0), (ff_inner[0] // dim if ff_inner else 4)


def family_of(context_dim: int) -> str:
    return {768: "sd15", 2048: "sdxl"}.get(context_dim, f"context-{context_dim}")


def has_face_lora(ip_adapter: dict[str, torch.Tensor]) -> bool:
    return "0.to_q_lora.down.weight" in ip_adapter
