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


# The keys that make each layout, for "closest kind" hints when nothing matches.
SIGNATURES = {
    "basic (ImageProjModel)": ("proj.weight", "proj.bias", "norm.weight", "norm.bias"),
    "full face (MLPProjModel)": ("proj.0.weight", "proj.2.weight", "proj.3.weight"),
    "plus (Resampler)": ("latents", "proj_in.weight", "proj_out.weight", "norm_out.weight"),
    "FaceID (MLP + norm)": ("proj.0.weight", "proj.2.weight", "norm.weight"),
    "FaceID-Plus (perceiver)": ("proj.0.weight", "norm.weight", "perceiver_resampler.proj_in.weight"),
}


def closest_kind(image_proj: dict[str, torch.Tensor], ip_adapter: dict[str, torch.Tensor]) -> str:
    """Name the layout whose signature keys the file shares most, and what differs from it."""
    def share(keys: tuple[str, ...]) -> float:
        return sum(k in image_proj for k in keys) / len(keys)

    best = max(SIGNATURES, key=lambda label: share(SIGNATURES[label]))
    missing = [k for k in SIGNATURES[best] if k not in image_proj]
    if share(SIGNATURES[best]) == 0:
        return "It shares no keys with any known projection layout."
    if missing:
        return f"Closest kind: {best}; missing {', '.join(missing)}."
    out_widths = {tuple(t.shape)[0] for k, t in image_proj.items() if k.startswith(("norm", "proj_out")) and
                  k.endswith("weight") and isinstance(t, torch.Tensor)}
    return (f"Closest kind: {best}, but its output width(s) {sorted(out_widths)} do not match the UNet context "
            f"width {context_dim_of(ip_adapter)} its attention weights read (mixed or corrupted file).")


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
        f"{context_dim_of(ip_adapter)}). {closest_kind(image_proj, ip_adapter)}",
        expected="an SD1.5/SDXL/Kolors IP-Adapter: basic (proj+norm), plus (latents+proj_in), full face (proj.0-3), "
        "or FaceID (proj.0/2+norm)",
        fix="Check the file is an IP-Adapter for SD1.5, SDXL or Kolors; adapters for Flux, SD3 or other families "
        "need their own node packs.",
    )
