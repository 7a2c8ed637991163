"""Apply nodes: declarations only; the work is in apply_core."""

from __future__ import annotations

from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.weighting import SIMPLE_WEIGHT_TYPES
from . import base, encoding
from .apply_core import ApplyOptions, adapter_of, apply_embeds, apply_images, check_not_face


class IPAdapterSimple(base.Node):
    DISPLAY_NAME = "IPAdapter"
    DESCRIPTION = "Apply an IP-Adapter with the few settings most images need. Needs a unified loader pipeline."
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": base.MODEL,
                "ipadapter": base.IPADAPTER,
                "image": base.IMAGE,
                "weight": base.weight_input(hi=3.0),
                "start_at": base.START_AT,
                "end_at": base.END_AT,
                "weight_type": (list(SIMPLE_WEIGHT_TYPES), {"tooltip": "standard = same weight everywhere; prompt "
                                "is more important = weaker early layers; style transfer = style layers only."}),
            },
            "optional": {"attn_mask": base.ATTN_MASK},
        }

    def run(self, model, ipadapter, image, weight, start_at, end_at, weight_type, attn_mask=None):
        opts = ApplyOptions(weight=weight, weight_type=SIMPLE_WEIGHT_TYPES[weight_type], start_at=start_at,
                            end_at=end_at)
        return (apply_images(model, ipadapter, image, opts, attn_mask=attn_mask),)


class IPAdapterAdvanced(base.Node):
    DISPLAY_NAME = "IPAdapter Advanced"
    DESCRIPTION = "Apply an IP-Adapter with full control: weight types, several images, negative image, mask."
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": base.MODEL,
                "ipadapter": base.IPADAPTER,
                "image": base.IMAGE,
                "weight": base.weight_input(),
                "weight_type": base.WEIGHT_TYPE,
                "combine_embeds": base.COMBINE,
                "start_at": base.START_AT,
                "end_at": base.END_AT,
                "embeds_scaling": base.SCALING,
            },
            "optional": {"image_negative": base.IMAGE_NEGATIVE, "attn_mask": base.ATTN_MASK,
                         "clip_vision": base.CLIP_VISION},
        }

    def run(self, model, ipadapter, image, weight, weight_type, combine_embeds, start_at, end_at, embeds_scaling,
            image_negative=None, attn_mask=None, clip_vision=None):
        opts = ApplyOptions(weight=weight, weight_type=weight_type, combine_embeds=combine_embeds, start_at=start_at,
                            end_at=end_at, embeds_scaling=embeds_scaling)
        return (apply_images(model, ipadapter, image, opts, image_negative, attn_mask, clip_vision),)


class IPAdapterEmbeds(base.Node):
    DISPLAY_NAME = "IPAdapter Embeds"
    DESCRIPTION = "Apply precomputed embeds (from 'IPAdapter Encoder' or 'IPAdapter Load Embeds')."
    CATEGORY = "ipadapter/embeds"
    UNFOLD = False  # the Batch variant: embeds row i conditions latent i
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": base.MODEL,
                "ipadapter": base.IPADAPTER,
                "pos_embed": ("EMBEDS", {"tooltip": "Embeds of the reference image(s)."}),
                "weight": base.weight_input(hi=3.0),
                "weight_type": base.WEIGHT_TYPE,
                "start_at": base.START_AT,
                "end_at": base.END_AT,
                "embeds_scaling": base.SCALING,
            },
            "optional": {
                "neg_embed": ("EMBEDS", {"tooltip": "Embeds to move away from. Without it: zeros, or a black "
                                         "image's features for plus/full-face models (needs clip_vision)."}),
                "attn_mask": base.ATTN_MASK,
                "clip_vision": base.CLIP_VISION,
            },
        }

    def run(self, model, ipadapter, pos_embed, weight, weight_type, start_at, end_at, embeds_scaling,
            neg_embed=None, attn_mask=None, clip_vision=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        check_not_face(kind)
        pos_embed = _embeds(pos_embed, kind, "pos_embed")
        if neg_embed is None:
            cv = None
            if kind.uses_hidden_states:
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
    return t.float()

NODES = {"IPAdapter": IPAdapterSimple, "IPAdapterAdvanced": IPAdapterAdvanced, "IPAdapterEmbeds": IPAdapterEmbeds}
