"""Applying a transformer IP-Adapter (Flux, SD3.5): checks before sampling, then one DitApplication
on a clone of the model (its device state handed to ComfyUI's memory manager)."""

from __future__ import annotations

import torch

from ..ipadapter_core.dit.application import (
    DIT_WEIGHT_TYPES,
    DitApplication,
    SD3PromptState,
    TransformerLayout,
    flux_prompt_kv,
    targets,
)
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.kinds import ModelKind
from . import host
from .dit_hooks import WRAPPER_KEY, DitPatch
from .model_family import describe_model, model_layout

ARCH_OF_FAMILY = {"flux": "flux", "sd3": "mmdit"}
DIT_PRESET_HINT = ("the presets 'FLUX XLABS v1/v2 (ViT-L)', 'FLUX INSTANTX (SigLIP)' or "
                   "'SD3.5-LARGE INSTANTX (SigLIP)' in 'IPAdapter Unified Loader'")


def check_dit_model(model, kind: ModelKind) -> TransformerLayout:
    """Refuse a transformer adapter on any model it was not made for, before anything is computed."""
    layout = model_layout(model)
    want = ARCH_OF_FAMILY[kind.family]
    if layout is None or layout.arch != want:
        raise IPAdapterError(
            f"The adapter is a {kind.family_name} model ({kind.label}) but the model is {describe_model(model)}.",
            expected=f"a {kind.family_name} diffusion model (loaded with 'Load Diffusion Model' or a checkpoint "
            "loader)", fix=f"Connect a {kind.family_name} model, or load the IP-Adapter made for your model's family.",
            input="model")
    if kind.hidden != layout.hidden:
        raise IPAdapterError(
            f"The adapter ({kind.label}) was made for a {kind.family_name} model of width {kind.hidden}, but the model "
            f"is {layout.label}.",
            expected=f"a model of width {kind.hidden}" + (" (SD3.5-Large)" if kind.hidden == 2432 else ""),
            fix="SD3.5-Large adapters need SD3.5-Large (not Medium or SD3): load the base model the adapter was "
            "trained for." if kind.family == "sd3" else "Load the base model the adapter was trained for.",
            input="model")
    return layout


def check_dit_options(kind: ModelKind, weight_type: str, embeds_scaling: str, layer_weights) -> None:
    if layer_weights is None and weight_type not in DIT_WEIGHT_TYPES:
        raise IPAdapterError(
            f"The weight type '{weight_type}' is defined over UNet layers and has no meaning on a {kind.family_name} "
            "transformer, so it is not applied.",
            expected=f"weight_type {' or '.join(repr(w) for w in DIT_WEIGHT_TYPES)} (the same weight in every block)",
            fix="Set weight_type to 'linear' ('standard' on the simple node), or give per-block weights with "
            "'IPAdapter Mad Scientist' layer_weights (block indices in docs/dit.md).", input="weight_type")
    if embeds_scaling != "V only":
        raise IPAdapterError(
            f"embeds_scaling '{embeds_scaling}' is a UNet-only option; transformer adapters scale their output.",
            expected="embeds_scaling 'V only'", fix="Set embeds_scaling to 'V only'.", input="embeds_scaling")


def compute_dtype(model) -> torch.dtype:
    """The dtype the model's activations have: its manual-cast dtype, else its weight dtype (fp8 -> bf16)."""
    base = model.model
    dtype = getattr(base, "manual_cast_dtype", None) or base.get_dtype()
    return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16


def build_dit_application(model, adapter, cond: torch.Tensor, uncond: torch.Tensor, *, weight: float,
                          weight_type: str = "linear", start_at: float = 0.0, end_at: float = 1.0,
                          embeds_scaling: str = "V only", unfold: bool = False,
                          layer_weights: dict[int, float] | None = None, mask: torch.Tensor | None = None,
                          frame_weights: torch.Tensor | None = None, v_norm: bool = False) -> DitApplication:
    """Encoder outputs (one row per reference) -> the application. Flux kinds project to tokens and K/V
    here; SD3.5 keeps the features and resamples them per timestep."""
    kind = adapter.kind
    layout = check_dit_model(model, kind)
    check_dit_options(kind, weight_type, embeds_scaling, layer_weights)
    acting = targets(kind, layout, weight, layer_weights)
    sigma_start, sigma_end = host.sigma_window(model, start_at, end_at)
    dtype = compute_dtype(model)
    entries = [t.entry for t in acting]
    if kind.arch == "flux":
        tokens_c, tokens_u = adapter.project(cond), adapter.project(uncond)
        if not unfold:  # several references: one longer key sequence (diffusers' choice, docs/dit.md)
            tokens_c = tokens_c.reshape(1, -1, tokens_c.shape[-1])
            tokens_u = tokens_u.reshape(1, -1, tokens_u.shape[-1])
        state = flux_prompt_kv(kind, adapter.weights.ip_adapter, tokens_c, tokens_u, entries, layout.heads,
                               v_norm=v_norm, device=host.compute_device(), dtype=dtype)
    else:
        state = SD3PromptState(adapter.projection(), adapter.weights.ip_adapter, entries, cond.float(),
                               uncond.float(), concat=not unfold, dtype=dtype)
    return DitApplication(kind=kind, label=adapter.name, targets=tuple(acting), state=state,
                          sigma_start=sigma_start, sigma_end=sigma_end, mask=mask, frame_weights=frame_weights,
                          heads=layout.heads)


def patch_dit(model, application: DitApplication) -> None:
    """Add the application to (an already-cloned) model: the keyed wrapper and the state's ModelPatcher."""
    import comfy.model_management as mm
    import comfy.model_patcher
    from comfy.patcher_extension import WrappersMP

    if not application.targets:  # weight 0 everywhere: nothing to hook, nothing to load
        return
    if not hasattr(model, "add_wrapper_with_key"):  # model wrappers: ComfyUI from December 2024 on
        raise IPAdapterError("This ComfyUI is too old for transformer IP-Adapters (no model wrappers).",
                             expected="ComfyUI 0.3.60 or newer", fix="Update ComfyUI.", input="model")
    host.restack_wrapper(model, WrappersMP.APPLY_MODEL, WRAPPER_KEY, DitPatch,
                         lambda patch: patch.stacked(application) if patch else DitPatch((application,)))
    holder = comfy.model_patcher.ModelPatcher(application.state, load_device=mm.get_torch_device(),
                                              offload_device=mm.unet_offload_device())
    model.set_additional_models(WRAPPER_KEY, list(model.get_additional_models_with_key(WRAPPER_KEY)) + [holder])
