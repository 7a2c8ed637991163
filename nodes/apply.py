"""Apply nodes: declarations only; the work is in apply_core."""

from __future__ import annotations

from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.weighting import SIMPLE_WEIGHT_TYPES
from . import base, encoding
from .apply_core import ApplyOptions, adapter_of, apply_embeds, apply_images, check_not_face
from .declared import Declared


class IPAdapterSimple(Declared):
    DISPLAY_NAME = "IPAdapter"
    DESCRIPTION = "Apply an IP-Adapter with the few settings most images need. Needs a unified loader pipeline."
    REQUIRED = ("image", "weight", "start_at", "end_at", "weight_type")
    OPTIONAL = ("attn_mask",)
    OVERRIDES = {
        "weight": base.weight_input(hi=3.0),
        "weight_type": (list(SIMPLE_WEIGHT_TYPES), {"tooltip": "standard = same weight everywhere; prompt is more "
                        "important = weaker early layers; style transfer = style layers only."}),
    }

    def run(self, model, ipadapter, image, weight, start_at, end_at, weight_type, attn_mask=None):
        opts = ApplyOptions(weight=weight, weight_type=SIMPLE_WEIGHT_TYPES[weight_type], start_at=start_at,
                            end_at=end_at)
        return (apply_images(model, ipadapter, image, opts, attn_mask=attn_mask),)


class IPAdapterAdvanced(Declared):
    DISPLAY_NAME = "IPAdapter Advanced"
    DESCRIPTION = "Apply an IP-Adapter with full control: weight types, several images, negative image, mask."

    OPTIONAL = ("image_negative", "attn_mask", "clip_vision", "instantx_v_norm")

    def run(self, model, ipadapter, image, weight, weight_type, combine_embeds, start_at, end_at, embeds_scaling,
            image_negative=None, attn_mask=None, clip_vision=None, instantx_v_norm=False):
        opts = ApplyOptions(weight=weight, weight_type=weight_type, combine_embeds=combine_embeds, start_at=start_at,
                            end_at=end_at, embeds_scaling=embeds_scaling, v_norm=bool(instantx_v_norm))
        return (apply_images(model, ipadapter, image, opts, image_negative, attn_mask, clip_vision),)


class IPAdapterEmbeds(Declared):
    DISPLAY_NAME = "IPAdapter Embeds"
    DESCRIPTION = "Apply precomputed embeds (from 'IPAdapter Encoder' or 'IPAdapter Load Embeds')."
    CATEGORY = "ipadapter/embeds"
    UNFOLD = False  # the Batch variant: embeds row i conditions latent i
    REQUIRED = ("pos_embed", "weight", "weight_type", "start_at", "end_at", "embeds_scaling")
    OPTIONAL = ("neg_embed", "attn_mask", "clip_vision")
    OVERRIDES = {"weight": base.weight_input(hi=3.0)}

    def run(self, model, ipadapter, pos_embed, weight, weight_type, start_at, end_at, embeds_scaling,
            neg_embed=None, attn_mask=None, clip_vision=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        check_not_face(kind)
        pos_embed = _embeds(pos_embed, kind, "pos_embed")
        if neg_embed is None:
            cv = None
            if encoding.negative_needs_encoder(kind):
                cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)
            neg_embed = encoding.negative(cv, kind, pos_embed, None)
        else:
            neg_embed = _embeds(neg_embed, kind, "neg_embed")
        opts = ApplyOptions(weight=weight, weight_type=weight_type, start_at=start_at, end_at=end_at,
                            embeds_scaling=embeds_scaling, unfold=self.UNFOLD)
        return (apply_embeds(model, pipeline, pos_embed, neg_embed, opts, attn_mask),)


def _embeds(t, kind, input: str):
    if t is None or t.shape[0] == 0:
        raise IPAdapterError("The embeds are empty.", expected="embeds from 'IPAdapter Encoder'",
                             fix="Connect the Encoder's output.", input=input)
    if t.shape[-1] != kind.encoder_width:
        raise IPAdapterError(
            f"The embeds are {t.shape[-1]} wide but the {kind.label} adapter reads {kind.encoder_width}-wide "
            f"{kind.encoder_output}.",
            expected=f"embeds made with {encoding.encoder_label(encoding.required_encoder(kind))}",
            fix="Encode the image with the same adapter and its matching CLIP vision.", input=input,
        )
    if kind.uses_hidden_states and t.dim() == 2:
        raise IPAdapterError(
            "These are pooled image embeds but the adapter needs hidden states.",
            expected="embeds from 'IPAdapter Encoder' given this plus/full-face adapter",
            fix="Re-encode the image with this adapter connected to the Encoder.", input=input,
        )
    if kind.is_transformer and not kind.uses_hidden_states and t.dim() != 2:
        raise IPAdapterError(
            f"These embeds are hidden states {tuple(t.shape)}, but the {kind.label} adapter reads one pooled vector "
            "per image.", expected=f"embeds from 'IPAdapter Encoder' given this {kind.family_name} adapter",
            fix="Re-encode the image with this adapter connected to the Encoder.", input=input,
        )
    return t.float()

NODES = {"IPAdapter": IPAdapterSimple, "IPAdapterAdvanced": IPAdapterAdvanced, "IPAdapterEmbeds": IPAdapterEmbeds}
