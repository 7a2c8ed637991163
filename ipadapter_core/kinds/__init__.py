"""Model-kind registry: each family module's ``detect`` is tried in order; the first hit wins.

Order matters only where layouts overlap: full-face (``proj.3``) before FaceID (``proj.0/2`` plus
``norm``), and basic (``proj`` + ``norm``) is unambiguous.
"""

from __future__ import annotations

import torch

from ..errors import IPAdapterError
from . import basic, faceid, full, plus
from .base import ModelKind, context_dim_of, family_of

DETECTORS = (full.detect, faceid.detect, plus.detect, basic.detect)

__all__ = ["ModelKind", "detect_kind", "context_dim_of", "family_of"]


def detect_kind(image_proj: dict[str, torch.Tensor], ip_adapter: dict[str, torch.Tensor], name: str = "") -> ModelKind:
    """Identify an adapter from its tensors, or explain why it matches no known kind."""
    for detect in DETECTORS:
        kind = detect(image_proj, ip_adapter)
        if kind is not None:
            return kind
    keys = ", ".join(sorted(image_proj)[:6])
    raise IPAdapterError(
        f"{name or 'This file'} has IP-Adapter sections but its projection layout matches no known kind "
        f"(image_proj keys: {keys}{'…' if len(image_proj) > 6 else ''}; UNet context width "
        f"{context_dim_of(ip_adapter)}).",
        expected="an SD1.5/SDXL/Kolors IP-Adapter: basic (proj+norm), plus (latents+proj_in), full face (proj.0-3), "
        "or FaceID (proj.0/2+norm)",
        fix="Check the file is an IP-Adapter for SD1.5, SDXL or Kolors; adapters for Flux, SD3 or other families "
        "need their own node packs.",
    )
