"""What family a ComfyUI model is (UNet by its context width, or a transformer by its blocks), for the
checks every apply node and loader runs before sampling."""

from __future__ import annotations

from ..ipadapter_core.dit.application import TransformerLayout
from . import host
from .dit_hooks import layout_of

FAMILY_CONTEXT = {768: "SD1.5", 2048: "SDXL", 1280: "the SDXL refiner", 1024: "SD2.x"}
REFINER_FIX = "The SDXL refiner cannot take image prompts: apply the adapter to the SDXL base model."


def model_layout(model) -> TransformerLayout | None:
    """The Flux / MMDiT block layout, or None for a UNet (or an unknown model)."""
    return layout_of(host.unet_of(model))


def describe_context(ctx: int | None) -> str:
    """What a UNet is, by the width of the text context its cross-attention reads."""
    if ctx is None:
        return "a model without UNet cross-attention (a video or other transformer model)"
    return FAMILY_CONTEXT.get(ctx, f"a model with {ctx}-wide text context")


def describe_model(model) -> str:
    """The model's family for messages: its transformer layout, else its UNet context width."""
    layout = model_layout(model)
    if layout is not None:
        return f"a {layout.label} model"
    return describe_context(host.context_dim(model))


def model_family(model) -> str | None:
    """"sd15", "sdxl" (and Kolors), "flux", "sd3", or None for anything else."""
    layout = model_layout(model)
    if layout is not None:
        return "flux" if layout.arch == "flux" else "sd3"
    return {768: "sd15", 2048: "sdxl"}.get(host.context_dim(model))
