"""Model-kind registry: each family module's ``detect`` is tried in order; the first hit wins.

Transformer families (Flux XLabs, Flux InstantX, SD3.5 InstantX) come first and claim a file by
content no UNet adapter has (K/V numbered from 0, K/V biases, AdaLN / time-embedding weights); a
claimed file that does not hold together is reported as that family's broken file instead of being
handed on. The UNet detectors then only see K/V that read SD1.5's or SDXL's context width. Among
them order matters where layouts overlap: full-face (``proj.3``) before FaceID (``proj.0/2`` plus
``norm``), and basic (``proj`` + ``norm``) is unambiguous.
"""

from __future__ import annotations

import torch

from ..errors import IPAdapterError
from . import basic, faceid, full, instantx_flux, instantx_sd3, plus, xlabs_flux
from .base import ModelKind, context_dim_of, family_of
from .blocks import LayoutMismatch, entries, is_transformer_layout

TRANSFORMER_DETECTORS = (xlabs_flux.detect, instantx_flux.detect, instantx_sd3.detect)
UNET_DETECTORS = (full.detect, faceid.detect, plus.detect, basic.detect)
DETECTORS = TRANSFORMER_DETECTORS + UNET_DETECTORS
UNET_CONTEXTS = (768, 2048)  # SD1.5 and SDXL/Kolors text-context widths: what UNet adapters' K/V read

__all__ = ["ModelKind", "detect_kind", "context_dim_of", "family_of"]

SUPPORTED = ("an IP-Adapter for SD1.5/SDXL/Kolors (basic, plus, full face, FaceID), Flux.1 (XLabs v1/v2, InstantX) "
             "or SD3.5-Large (InstantX)")

# The keys that make each layout (projection keys, attention keys), for "closest kind" hints.
SIGNATURES = {
    "basic (ImageProjModel)": (("proj.weight", "proj.bias", "norm.weight", "norm.bias"), ("1.to_k_ip.weight",)),
    "full face (MLPProjModel)": (("proj.0.weight", "proj.2.weight", "proj.3.weight"), ("1.to_k_ip.weight",)),
    "plus (Resampler)": (("latents", "proj_in.weight", "proj_out.weight", "norm_out.weight"), ("1.to_k_ip.weight",)),
    "FaceID (MLP + norm)": (("proj.0.weight", "proj.2.weight", "norm.weight"), ("1.to_k_ip.weight",)),
    "FaceID-Plus (perceiver)": (("proj.0.weight", "norm.weight", "perceiver_resampler.proj_in.weight"),
                                ("1.to_k_ip.weight",)),
    "Flux XLabs (ImageProjModel, K/V with bias)": (("proj.weight", "proj.bias", "norm.weight", "norm.bias"),
                                                   ("0.to_k_ip.weight", "0.to_k_ip.bias")),
    "Flux InstantX (MLP + norm, K/V from block 0)": (("proj.0.weight", "proj.2.weight", "norm.weight"),
                                                     ("0.to_k_ip.weight",)),
    "SD3.5 InstantX (TimeResampler)": (("latents", "proj_in.weight", "proj_out.weight", "norm_out.weight",
                                        "time_embedding.linear_1.weight"),
                                       ("0.norm_ip.linear.weight", "0.to_k_ip.weight")),
}


def kv_width(ip_adapter: dict[str, torch.Tensor]) -> int | None:
    """The token width the K/V weights read: entry 1's for UNet adapters, else the lowest entry's."""
    width = context_dim_of(ip_adapter)
    if width is not None:
        return width
    numbered, _ = entries(ip_adapter)
    for index in sorted(numbered):
        s = numbered[index].get("to_k_ip.weight")
        if s is not None and len(s) == 2:
            return s[1]
    return None


def closest_kind(image_proj: dict[str, torch.Tensor], ip_adapter: dict[str, torch.Tensor]) -> str:
    """Name the layout whose signature keys the file shares most, and what differs from it."""
    def share(label: str) -> float:
        proj_keys, kv_keys = SIGNATURES[label]
        return (sum(k in image_proj for k in proj_keys) + sum(k in ip_adapter for k in kv_keys)) / (
            len(proj_keys) + len(kv_keys))

    best = max(SIGNATURES, key=share)
    if not any(k in image_proj for k in SIGNATURES[best][0]):
        return "It shares no keys with any known projection layout."
    missing = [k for k in SIGNATURES[best][0] if k not in image_proj]
    missing += [f"ip_adapter {k}" for k in SIGNATURES[best][1] if k not in ip_adapter]
    if missing:
        return f"Closest kind: {best}; missing {', '.join(missing)}."
    out_widths = {tuple(t.shape)[0] for k, t in image_proj.items() if k.startswith(("norm", "proj_out")) and
                  k.endswith("weight") and isinstance(t, torch.Tensor)}
    return (f"Closest kind: {best}, but its output width(s) {sorted(out_widths)} do not match the context "
            f"width {kv_width(ip_adapter)} its attention weights read (mixed or corrupted file).")


def _no_match(image_proj: dict, ip_adapter: dict, label: str, transformer: bool) -> IPAdapterError:
    keys = ", ".join(sorted(image_proj)[:6])
    width = kv_width(ip_adapter)
    if transformer:
        reads = (f"its attention weights are numbered like a transformer adapter's (from block 0, or with biases) "
                 f"and read {width}-wide tokens")
    elif width in UNET_CONTEXTS or width is None:
        reads = f"UNet context width {width}"
    else:
        reads = f"UNet context width {width}, which is neither SD1.5's 768 nor SDXL's 2048"
    return IPAdapterError(
        f"{label} has IP-Adapter sections but its projection layout matches no known kind "
        f"(image_proj keys: {keys}{'…' if len(image_proj) > 6 else ''}; {reads}). "
        f"{closest_kind(image_proj, ip_adapter)}",
        expected=SUPPORTED,
        fix="Check the file is one of these and complete (compare its size with the download page); adapters "
        "for other models (HunyuanDiT, SD2.x, video models) are not supported by this pack.",
    )


def detect_kind(image_proj: dict[str, torch.Tensor], ip_adapter: dict[str, torch.Tensor], name: str = "") -> ModelKind:
    """Identify an adapter from its tensors, or explain why it matches no known kind."""
    label = name or "This file"
    for detect in TRANSFORMER_DETECTORS:
        try:
            kind = detect(image_proj, ip_adapter)
        except LayoutMismatch as exc:
            raise IPAdapterError(
                f"{label} looks like {'an' if exc.family.startswith('SD') else 'a'} {exc.family} IP-Adapter, but it "
                f"does not hold together: {exc.problem}.",
                expected=exc.expected,
                fix="The file is incomplete, damaged or stitched from two files: download it again.",
            ) from None
        if kind is not None:
            return kind
    transformer = is_transformer_layout(ip_adapter)
    if not transformer and context_dim_of(ip_adapter) in UNET_CONTEXTS:
        for detect in UNET_DETECTORS:
            kind = detect(image_proj, ip_adapter)
            if kind is not None:
                return kind
    raise _no_match(image_proj, ip_adapter, label, transformer)
