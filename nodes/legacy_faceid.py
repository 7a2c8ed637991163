"""v1 FaceID nodes: 'Apply IPAdapter FaceID', 'Load InsightFace' and 'Prepare Image For InsightFace'.

v1 FaceID differs from today's (incumbent-v1.md §2.9, §3.2): the aligned face crop is 256 px for every
model, the ``faceid_v2`` flag as saved decides the FaceID-Plus shortcut (not the file name),
``weight_v2`` only counts when that flag is on, ``noise`` scrambles the aligned crops for the CLIP
branch's negative, and no LoRA is applied (v1 graphs carry their own LoraLoaderModelOnly).
Remaining differences: face detection stops at 320 px (v1 went down to 192).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ipadapter_core.attention import fit_rows
from ..ipadapter_core.embeds import check_finite
from ..ipadapter_core.face import PROVIDERS
from ..ipadapter_core.images import contrast_adaptive_sharpening, crop_square, resize
from ..ipadapter_core.legacy_noise import v1_noise_image
from . import base, encoding
from .apply_core import adapter_of, apply_embeds, apply_tokens, check_model
from .faceid_embeds import analyze, face_model_of
from .faceid_nodes import face_model
from .legacy_common import CATEGORY, V1Node, v1_options, v1_pair

V1_CROP = 256
V1_PACK = "buffalo_l"
T_INSIGHTFACE = "Face model from 'Load InsightFace' (v1) or 'IPAdapter InsightFace Loader'."


class IPAdapterApplyFaceID(V1Node):
    DISPLAY_NAME = "Apply IPAdapter FaceID (v1)"
    DESCRIPTION = ("v1 'Apply IPAdapter FaceID', kept so saved v1 graphs run (no LoRA is applied, as in v1). "
                   "New graphs: 'IPAdapter FaceID' with 'IPAdapter Unified Loader FaceID'.")
    REQUIRED = ("ipadapter", "clip_vision", "insightface", "image", "model", "weight", "noise", "weight_type",
                "start_at", "end_at", "faceid_v2", "weight_v2", "unfold_batch")
    OPTIONAL = ("attn_mask",)
    OVERRIDES = {
        "ipadapter": ("IPADAPTER", {"tooltip": "The FaceID adapter, from 'IPAdapter Model Loader'."}),
        "clip_vision": ("CLIP_VISION", {"tooltip": "CLIP vision encoder (ViT-H); used by FaceID-Plus only."}),
        "insightface": ("INSIGHTFACE", {"tooltip": T_INSIGHTFACE}),
        "image": ("IMAGE", {"tooltip": "Photo(s) of the face."}),
        "faceid_v2": ("BOOLEAN", {"default": False, "tooltip": "FaceID-Plus: add the v2 shortcut (identity "
                              "tokens + weight_v2 x CLIP branch). On for FaceID-PlusV2 files, off for FaceID-Plus."}),
        "weight_v2": base.float_input(1.0, -1.0, 3.0, 0.05, "Weight of the CLIP branch when faceid_v2 is on."),
    }

    def run(self, ipadapter, clip_vision, insightface, image, model, weight, noise=0.0, weight_type="original",
            start_at=0.0, end_at=1.0, faceid_v2=False, weight_v2=1.0, unfold_batch=False, attn_mask=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        check_model(model, kind)
        opts = v1_options(weight, weight_type, start_at, end_at, unfold_batch)
        if not kind.face:  # v1: the same as 'Apply IPAdapter', InsightFace unused
            cond, uncond = v1_pair(pipeline, kind, image, noise, clip_vision)
            return (apply_embeds(model, pipeline, cond, uncond, opts, attn_mask),)
        encoding.check_image(image, "image")
        faces = analyze(face_model_of(pipeline, insightface), image, V1_CROP, "best score", "image")
        ids = faces.embeddings(kind.face_embedding or "normed")
        check_finite(ids, "face embedding", "image")
        uncond_ids = torch.zeros_like(ids)
        adapter = pipeline.adapter
        if kind.uses_hidden_states:
            crops = faces.crops()
            cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)
            clip = encoding.encode(cv, kind, crops)
            negative = v1_noise_image(crops, float(noise)) if noise else None
            uncond_clip = fit_rows(encoding.negative(cv, kind, clip, negative), clip.shape[0])
            shortcut = bool(faceid_v2)
            w2 = float(weight_v2) if shortcut else 1.0
            cond = adapter.project(ids, clip, clip_weight=w2, shortcut=shortcut)
            uncond = adapter.project(uncond_ids, uncond_clip, clip_weight=w2, shortcut=shortcut)
        else:
            cond, uncond = adapter.project(ids), adapter.project(uncond_ids)
        return (apply_tokens(model, adapter, cond, uncond, opts, attn_mask),)


class InsightFaceLoader(base.Node):
    DISPLAY_NAME = "Load InsightFace (v1)"
    DESCRIPTION = ("v1 'Load InsightFace': the buffalo_l pack from models/insightface. New graphs: 'IPAdapter "
                   "InsightFace Loader'.")
    CATEGORY = CATEGORY
    DEPRECATED = True
    RETURN_TYPES = ("INSIGHTFACE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"provider": (PROVIDERS[:3], {"tooltip": "Where InsightFace runs; a provider this "
                                          "onnxruntime lacks falls back to CPU with a warning."})}}

    def run(self, provider):
        return (face_model(V1_PACK, provider),)


class PrepImageForInsightFace(base.Node):
    DISPLAY_NAME = "Prepare Image For InsightFace (v1)"
    DESCRIPTION = "v1 node: square crop, 640 px (optionally a 580 px face with a white 30 px border), sharpening."
    CATEGORY = CATEGORY
    DEPRECATED = True
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Picture(s) with a face."}),
            "crop_position": (["center", "top", "bottom", "left", "right"], {"tooltip": "Which part of a non-square "
                              "picture the square crop keeps."}),
            "sharpening": base.float_input(0.0, 0.0, 1.0, 0.05, "Contrast-adaptive sharpening after the resize."),
            "pad_around": ("BOOLEAN", {"default": True, "tooltip": "Shrink to 580 px and add a 30 px white border, "
                           "so the detector sees the face with a margin."}),
        }}

    def run(self, image, crop_position="center", sharpening=0.0, pad_around=True):
        encoding.check_image(image, "image")
        square = crop_square(image[..., :3].float(), crop_position)
        out = resize(square, 580 if pad_around else 640, "LANCZOS")
        out = contrast_adaptive_sharpening(out, float(sharpening))
        if pad_around:  # v1 padded with 255 on a 0-1 image; 1.0 is the same white for every clamping consumer
            out = F.pad(out.movedim(-1, 1), (30, 30, 30, 30), value=1.0).movedim(1, -1)
        return (out,)


NODES = {
    "IPAdapterApplyFaceID": IPAdapterApplyFaceID,
    "InsightFaceLoader": InsightFaceLoader,
    "PrepImageForInsightFace": PrepImageForInsightFace,
}
