"""Applying an adapter to a model: the steps every apply node shares."""

from __future__ import annotations

import torch

from ..ipadapter_core.adapter import build_application, fit_rows
from ..ipadapter_core.attention import validate_mask
from ..ipadapter_core.embeds import check_finite, combine
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.kinds import ModelKind
from ..ipadapter_core.weighting import resolve
from . import dit_apply, encoding, host, mask_watch
from .apply_options import ApplyOptions
from .faceid_embeds import face_tokens
from .model_family import REFINER_FIX, describe_context, model_layout
from .pipeline import Pipeline


def adapter_of(pipeline: Pipeline | None) -> Pipeline:
    if not isinstance(pipeline, Pipeline) or pipeline.adapter is None:
        raise IPAdapterError(
            "No IP-Adapter model reached this node.",
            expected="an IPADAPTER from 'IPAdapter Unified Loader' or 'IPAdapter Model Loader'",
            fix="Connect the ipadapter output of a loader node.", input="ipadapter",
        )
    return pipeline


def check_model(model, kind: ModelKind) -> None:
    """Refuse an adapter made for another base model before anything is computed."""
    if kind.is_transformer:
        dit_apply.check_dit_model(model, kind)
        return
    ctx = host.context_dim(model)
    if ctx is None:
        layout = model_layout(model)
        if layout is None:
            raise IPAdapterError(
                "This model has neither UNet cross-attention layers nor Flux/SD3 transformer blocks (a video or "
                "other model family).", expected=f"an SD1.5, SDXL or Kolors model for this {kind.family_name} adapter",
                fix="IP-Adapters exist for SD1.5, SDXL, Kolors, Flux.1 and SD3.5: connect one of those models.",
                input="model")
        raise IPAdapterError(
            f"The adapter is a {kind.family_name} model ({kind.label}) but the model is a {layout.label} model.",
            expected=f"a {kind.family_name} checkpoint for this adapter",
            fix=f"For Flux and SD3.5 use their own IP-Adapters: {dit_apply.DIT_PRESET_HINT}. Otherwise connect a "
            f"{kind.family_name} checkpoint.",
            input="model",
        )
    if ctx != kind.context_dim:
        model_family = describe_context(ctx)
        fix = REFINER_FIX if ctx == 1280 else f"Load a {model_family} adapter, or use a {kind.family_name} checkpoint."
        raise IPAdapterError(
            f"The adapter is a {kind.family_name} model ({kind.label}) but the checkpoint is {model_family}.",
            expected=f"a {kind.family_name} checkpoint for this adapter", fix=fix, input="model",
        )


def check_not_face(kind: ModelKind) -> None:
    if kind.face:
        raise IPAdapterError(
            f"This is a FaceID adapter ({kind.label}); it needs a face embedding from InsightFace, which this "
            "node does not compute.",
            expected="a non-FaceID adapter (standard, plus, full face ...)",
            fix="Use 'IPAdapter FaceID' with 'IPAdapter Unified Loader FaceID' (or 'IPAdapter InsightFace "
            "Loader') for FaceID models.", input="ipadapter",
        )


def check_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The core's mask check, run before any encoding so a bad mask fails early."""
    return None if mask is None else validate_mask(mask)


def encode_pair(pipeline: Pipeline, kind: ModelKind, image: torch.Tensor, image_negative, clip_vision):
    """Reference image(s) -> (cond, uncond) encoder outputs for this adapter."""
    encoding.check_image(image, "image")
    cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)
    file = pipeline.clip_vision_file if cv is pipeline.clip_vision else None
    cond = encoding.encode(cv, kind, image, clip_vision_file=file)
    uncond = encoding.negative(cv, kind, cond, image_negative, clip_vision_file=file)
    return cond, uncond


def apply_embeds(model, pipeline: Pipeline, cond: torch.Tensor, uncond: torch.Tensor, opts: ApplyOptions,
                 attn_mask: torch.Tensor | None = None, alt_cond: torch.Tensor | None = None, clone: bool = True,
                 watch_mask: bool = True):
    """Combine and project encoder outputs, then patch (a clone of) the model with the tokens.

    ``watch_mask=False``: the caller checks the user's mask against the latent itself (tiles)."""
    adapter = pipeline.adapter
    check_finite(cond, "reference embeds", "image")  # (apply_tokens checks the model)
    check_finite(uncond, "negative embeds", "image_negative")
    if not opts.unfold:
        cond = combine(cond, opts.combine_embeds)
        if opts.combine_embeds != "concat":
            uncond = uncond[:1]
    uncond = fit_rows(uncond, cond.shape[0])
    if adapter.kind.is_transformer:
        return apply_dit_embeds(model, adapter, cond, uncond, opts, attn_mask, clone=clone, watch_mask=watch_mask)
    if alt_cond is not None and not opts.unfold:
        alt_cond = combine(alt_cond, opts.combine_embeds)
    alt_tokens = adapter.project(alt_cond) if alt_cond is not None else None
    return apply_tokens(model, adapter, adapter.project(cond), adapter.project(uncond), opts, attn_mask,
                        alt_tokens, clone=clone, watch_mask=watch_mask)


def apply_tokens(model, adapter, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, opts: ApplyOptions,
                 attn_mask: torch.Tensor | None = None, alt_tokens: torch.Tensor | None = None, clone: bool = True,
                 watch_mask: bool = True):
    """Resolve per-layer weights and the sigma window, build the application and patch the model.

    ``clone=False`` adds to a model this node already cloned (tiles, regional params).
    """
    kind = adapter.kind
    check_model(model, kind)
    mask = check_mask(attn_mask)
    weight, frame_weights = split_weight(opts.weight, opts.unfold)
    sites = host.model_sites(model)
    weights = resolve(opts.weight_type, weight, sites, kind.family, composition_weight=opts.composition_weight,
                      style_boost=opts.style_boost, composition_boost=opts.composition_boost,
                      layer_weights=opts.layer_weights)
    sigma_start, sigma_end = host.sigma_window(model, opts.start_at, opts.end_at)
    application = build_application(
        adapter, sites, cond_tokens, uncond_tokens, weights, embeds_scaling=opts.embeds_scaling,
        alt_cond=alt_tokens, unfold=opts.unfold, sigma_start=sigma_start, sigma_end=sigma_end, mask=mask,
        frame_weights=frame_weights, device=host.compute_device(),
    )
    patched = model.clone() if clone else model
    host.patch_model(patched, application)
    if watch_mask:
        mask_watch.watch(patched, mask, adapter.name)
    return patched


def apply_dit_embeds(model, adapter, cond: torch.Tensor, uncond: torch.Tensor, opts: ApplyOptions,
                     attn_mask: torch.Tensor | None = None, clone: bool = True, watch_mask: bool = True):
    """Flux / SD3.5 adapters: the same options, checked for what a transformer can honour (dit_apply)."""
    if opts.composition_boost is not None or opts.style_boost is not None:
        raise IPAdapterError(
            f"Style and composition boosts select UNet layers; the {adapter.kind.family_name} adapter "
            f"({adapter.kind.label}) has no such layers.", expected="an SD1.5/SDXL model and adapter",
            fix="Use 'IPAdapter Advanced' with weight_type 'linear' for Flux and SD3.5 adapters.", input="ipadapter")
    mask = check_mask(attn_mask)
    weight, frame_weights = split_weight(opts.weight, opts.unfold)
    application = dit_apply.build_dit_application(
        model, adapter, cond, uncond, weight=weight, weight_type=opts.weight_type, start_at=opts.start_at,
        end_at=opts.end_at, embeds_scaling=opts.embeds_scaling, unfold=opts.unfold, layer_weights=opts.layer_weights,
        mask=mask, frame_weights=frame_weights, v_norm=opts.v_norm)
    patched = model.clone() if clone else model
    dit_apply.patch_dit(patched, application)
    if watch_mask:
        mask_watch.watch(patched, mask, adapter.name)
    return patched


def split_weight(weight, unfold: bool) -> tuple[float, torch.Tensor | None]:
    """A scalar weight, or a per-frame list (from 'IPAdapter Weights'): frames only act in batch mode."""
    if isinstance(weight, (list, tuple, torch.Tensor)):
        values = torch.as_tensor(weight, dtype=torch.float32).reshape(-1)
        if values.numel() == 0:
            raise IPAdapterError("The weight list is empty.", expected="a number or a list of per-frame weights",
                                 fix="Check the node feeding 'weight'.", input="weight")
        check_finite(values, "weight list", "weight")
        if unfold:
            return 1.0, values
        return float(values[0]), None
    return float(weight), None  # weighting.resolve refuses a non-finite weight


def apply_images(model, pipeline, image, opts: ApplyOptions, image_negative=None, attn_mask=None, clip_vision=None,
                 *, weight_faceidv2: float | None = None, insightface=None):
    """Reference images -> patched model clone. FaceID adapters go through face analysis when the
    pipeline (or ``insightface``) carries a face model; ``weight_faceidv2`` defaults to 2*weight, as
    in the incumbent's nodes that do not expose it."""
    pipeline = adapter_of(pipeline)
    kind = pipeline.adapter.kind
    check_model(model, kind)
    if kind.face:
        if pipeline.insightface is None and insightface is None:
            check_not_face(kind)
        w2 = weight_faceidv2 if weight_faceidv2 is not None else 2 * split_weight(opts.weight, False)[0]
        cond, uncond, _ = face_tokens(pipeline, kind, image, image_negative, clip_vision, w2, opts,
                                      insightface=insightface, model=model)
        return apply_tokens(model, pipeline.adapter, cond, uncond, opts, attn_mask)
    cond, uncond = encode_pair(pipeline, kind, image, image_negative, clip_vision)
    return apply_embeds(model, pipeline, cond, uncond, opts, attn_mask)
