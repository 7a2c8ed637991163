"""Nodes that produce embeds without applying them."""

from __future__ import annotations

from . import base, encoding
from .apply_core import adapter_of, check_not_face


class IPAdapterEncoder(base.Node):
    DISPLAY_NAME = "IPAdapter Encoder"
    DESCRIPTION = "CLIP-encode reference images into embeds for 'IPAdapter Embeds', saving or combining."
    CATEGORY = "ipadapter/embeds"
    RETURN_TYPES = ("EMBEDS", "EMBEDS")
    RETURN_NAMES = ("pos_embed", "neg_embed")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "ipadapter": base.IPADAPTER,
                "image": base.IMAGE,
                "weight": base.float_input(1.0, -1.0, 3.0, 0.01, "Multiplies the embeds before projection "
                                           "(useful to balance images combined later)."),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional mask over the reference image: only the white part is "
                                  "seen by the encoder."}),
                "clip_vision": base.CLIP_VISION,
            },
        }

    def run(self, ipadapter, image, weight, mask=None, clip_vision=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        check_not_face(kind)
        encoding.check_image(image, "image")
        cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)
        file = pipeline.clip_vision_file if cv is pipeline.clip_vision else None
        cond = encoding.encode(cv, kind, image, mask, clip_vision_file=file)
        uncond = encoding.negative(cv, kind, cond, None, clip_vision_file=file)
        return (cond * weight, uncond)

NODES = {"IPAdapterEncoder": IPAdapterEncoder}
