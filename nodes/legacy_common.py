"""Shared pieces of the v1 compatibility nodes: v1 widget specs and the v1 -> modern option mapping."""

from __future__ import annotations

import torch

from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.legacy_noise import v1_noise_image
from . import base, encoding
from .apply_core import ApplyOptions, encode_pair
from .declared import Declared

CATEGORY = "ipadapter/v1 (legacy)"
V1_WEIGHT_TYPES = {"original": "V only", "linear": "K+V", "channel penalty": "K+mean(V) w/ C penalty"}
T_V1_WEIGHT_TYPE = (
    "v1 meaning (not today's per-layer curves): original = the weight scales the image attention output; "
    "linear = also scales its keys (weaker below 1, stronger above); channel penalty = weakens the narrow "
    "320/640-channel layers (Fooocus style)."
)
T_NOISE = ("v1 negative: 0 = none (black image / zeros). Above 0 the negative is a scrambled, flipped, noisy copy "
           "of the reference: 0.01 is heavily scrambled, 1.0 almost the reference turned upside down.")
T_UNFOLD = "Batch mode: reference image i conditions latent i (the last image repeats). Off: every latent sees all."
T_CLIP_VISION = "CLIP vision encoder matching the adapter (ViT-H for most SD1.5/SDXL adapters)."

V1_WEIGHT = base.float_input(1.0, -1.0, 3.0, 0.05, base.T_WEIGHT)
NOISE = base.float_input(0.0, 0.0, 1.0, 0.01, T_NOISE)
WEIGHT_TYPE = (list(V1_WEIGHT_TYPES), {"tooltip": T_V1_WEIGHT_TYPE})
UNFOLD = ("BOOLEAN", {"default": False, "tooltip": T_UNFOLD})
CLIP_VISION = ("CLIP_VISION", {"tooltip": T_CLIP_VISION})

# The v1 apply nodes' inputs, in the v1 socket/widget vocabulary (their order is each node's REQUIRED).
V1_INPUTS: dict[str, tuple] = {
    "ipadapter": ("IPADAPTER", {"tooltip": "The adapter, from 'IPAdapter Model Loader'."}),
    "clip_vision": CLIP_VISION,
    "insightface": ("INSIGHTFACE", {"tooltip": "The face model, from 'Load InsightFace (v1)' or "
                                    "'IPAdapter InsightFace Loader'."}),
    "image": base.IMAGE,
    "model": base.MODEL,
    "weight": V1_WEIGHT,
    "noise": NOISE,
    "weight_type": WEIGHT_TYPE,
    "start_at": base.START_AT,
    "end_at": base.END_AT,
    "unfold_batch": UNFOLD,
    "attn_mask": base.ATTN_MASK,
}
V1_APPLY = ("ipadapter", "clip_vision", "image", "model", "weight", "noise", "weight_type", "start_at", "end_at")


class V1Node(Declared):
    """A v1 apply node: v1 sockets and widgets in v1 order (none leading), deprecated, in the v1 category."""

    CATEGORY = CATEGORY
    DEPRECATED = True
    TABLE = V1_INPUTS
    LEADING = ()


def v1_options(weight: float, weight_type: str, start_at: float, end_at: float, unfold: bool = False) -> ApplyOptions:
    """v1 settings as modern options (incumbent-v1.md §3.1)."""
    if weight_type not in V1_WEIGHT_TYPES:
        raise IPAdapterError(f"Unknown v1 weight_type '{weight_type}'.", expected=", ".join(V1_WEIGHT_TYPES),
                             fix="Pick a weight type from the list.", input="weight_type")
    return ApplyOptions(weight=weight, weight_type="linear", combine_embeds="concat", start_at=start_at,
                        end_at=end_at, embeds_scaling=V1_WEIGHT_TYPES[weight_type], unfold=bool(unfold))


def no_face(kind, node: str) -> None:
    if kind.face:
        raise IPAdapterError(
            f"This is a FaceID adapter ({kind.label}); v1 '{node}' has no InsightFace input.",
            expected="a non-FaceID adapter here", input="ipadapter",
            fix="Use 'Apply IPAdapter FaceID' (v1) with 'Load InsightFace', or the modern 'IPAdapter FaceID'.",
        )


def v1_pair(pipeline, kind, image: torch.Tensor, noise: float, clip_vision) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) encoder outputs with v1's negative: empty for noise 0, else the noised reference."""
    encoding.check_image(image, "image")
    if not noise:
        return encode_pair(pipeline, kind, image, None, clip_vision)
    cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)
    cond = encoding.encode(cv, kind, image)
    return cond, encoding.encode(cv, kind, v1_noise_image(image, float(noise)))


def split_v1_embeds(embeds, input: str = "embeds") -> tuple[torch.Tensor, torch.Tensor]:
    """A v1 EMBEDS value (cond and uncond stacked on axis 0, incumbent-v1.md §2.11) -> (cond, uncond)."""
    if not isinstance(embeds, torch.Tensor) or embeds.dim() not in (3, 4) or embeds.shape[0] != 2:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise IPAdapterError(
            f"These embeds ({shape}) are not a v1 pair (cond and uncond stacked: [2, images, ...]).",
            expected="the output of 'Encode IPAdapter Image (v1)', 'IPAdapter Batch Embeds (v1)' or a v1 .ipadpt file",
            fix="Use the v1 encoder here, or apply modern embeds with 'IPAdapter Embeds'.", input=input,
        )
    return embeds[0].float(), embeds[1].float()
