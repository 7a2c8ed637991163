"""Node inputs declared by name from one table, so every node lists the incumbent's widgets in the
incumbent's order without repeating their specs (tooltips, ranges) — and a change is made once."""

from __future__ import annotations

from . import base

_F = base.float_input
INPUTS: dict[str, tuple] = {
    "model": base.MODEL,
    "ipadapter": base.IPADAPTER,
    "image": base.IMAGE,
    "weight": base.weight_input(),
    "weight_type": base.WEIGHT_TYPE,
    "combine_embeds": base.COMBINE,
    "start_at": base.START_AT,
    "end_at": base.END_AT,
    "embeds_scaling": base.SCALING,
    "encode_batch_size": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Encode the images this many at "
                                  "a time to save memory on long batches; 0 = all at once."}),
    "sharpening": _F(0.0, 0.0, 1.0, 0.05, "Contrast-adaptive sharpening of the resized reference before tiling."),
    "image_style": ("IMAGE", {"tooltip": "Reference for style (colours, textures, medium): feeds the style layers."}),
    "image_composition": ("IMAGE", {"tooltip": "Reference for composition (layout, poses): feeds the composition "
                                    "layers only."}),
    "weight_style": _F(1.0, -1.0, 5.0, 0.05, "Strength of the style image at the style layers."),
    "weight_composition": _F(1.0, -1.0, 5.0, 0.05, "Strength of the composition image at the composition layers."),
    "expand_style": ("BOOLEAN", {"default": False, "tooltip": "Let the style image act on every layer except the "
                                 "composition ones ('strong style and composition'), not only the style layers."}),
    "weight_faceidv2": _F(1.0, -1.0, 5.0, 0.05, "FaceID Plus V2 only: strength of the face-structure (CLIP) part."),
    "layer_weights": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-layer weights 'index:value, ...' "
                                 "by transformer index (SD1.5 0-15, SDXL 0-10; Flux/SD3.5: the adapter's block, "
                                 "e.g. XLabs 0-18, InstantX Flux 0-56), times weight. Layers not listed get 0. "
                                 "Empty = use weight_type."}),
    "enhance_tiles": ("INT", {"default": 2, "min": 1, "max": 16, "tooltip": "Also encode the image as an n x n grid "
                              "of crops for more detail (feed a square image of about 224*n px). 1 = off."}),
    "enhance_ratio": _F(1.0, 0.0, 1.0, 0.05, "Weight of the full-image encoding against the crops' (batch: "
                        "full*ratio + crops*(1-ratio); otherwise two references, full*ratio and crops)."),
    "style_boost": _F(1.0, -5.0, 5.0, 0.05, "Strength at the style-adjacent layers, where the reference also steers "
                      "the negative away from its composition."),
    "composition_boost": _F(0.0, -5.0, 5.0, 0.05, "Strength at the non-composition layers, where the reference "
                            "steers the negative away from its style (0 = composition only)."),
    "ipadapter_params": ("IPADAPTER_PARAMS", {"tooltip": "Regions from 'IPAdapter Regional Conditioning' "
                                              "(or several merged with 'IPAdapter Combine Params')."}),
    "pos_embed": ("EMBEDS", {"tooltip": "Embeds of the reference image(s)."}),
    "neg_embed": ("EMBEDS", {"tooltip": "Embeds to move away from. Without it: zeros, or a black image's features "
                             "for plus/full-face models (needs clip_vision)."}),
    "image_negative": base.IMAGE_NEGATIVE,
    "attn_mask": base.ATTN_MASK,
    "clip_vision": base.CLIP_VISION,
    "instantx_v_norm": ("BOOLEAN", {"default": False, "tooltip": "InstantX Flux only: also RMS-normalise the image "
                                    "prompt's values, as ComfyUI-IPAdapter-Flux does (reproduces its images). Off = "
                                    "keys only, the reading of the other references (docs/dit.md)."}),
    "insightface": ("INSIGHTFACE", {"tooltip": "FaceID adapters only: the face analysis model (else the FaceID "
                                    "unified loader's)."}),
}
STANDARD = ("image", "weight", "weight_type", "combine_embeds", "start_at", "end_at", "embeds_scaling")
BATCH = ("image", "weight", "weight_type", "start_at", "end_at", "embeds_scaling", "encode_batch_size")
OPTIONAL = ("image_negative", "attn_mask", "clip_vision")


class Declared(base.Node):
    """Declares its inputs by name from ``TABLE``: ``LEADING`` then ``REQUIRED``, ``OPTIONAL``, and
    ``OVERRIDES`` for the few specs a node words differently."""

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("MODEL",)
    UNFOLD = False
    TABLE: dict[str, tuple] = INPUTS
    LEADING: tuple[str, ...] = ("model", "ipadapter")
    REQUIRED: tuple[str, ...] = STANDARD
    OPTIONAL: tuple[str, ...] = OPTIONAL
    OVERRIDES: dict[str, tuple] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        spec = {**cls.TABLE, **cls.OVERRIDES}
        return {"required": {n: spec[n] for n in (*cls.LEADING, *cls.REQUIRED)},
                "optional": {n: spec[n] for n in cls.OPTIONAL}}
