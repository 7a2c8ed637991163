"""FaceID adapters: an InsightFace embedding (plus CLIP features for the Plus kinds) -> tokens.

Told apart by content: the LoRA weights the FaceID/FaceID-Plus files embed, the perceiver of the
Plus kinds, and its 4096 width for Kolors. FaceID-Plus v1 and v2 share a layout, so the caller
decides v2 (the shortcut) from the user's choice or the file-name hint.
"""

from __future__ import annotations

from ..projection import MLPProjModelFaceId, ProjModelFaceIdPlus
from .base import ModelKind, context_dim_of, family_of, has_face_lora, perceiver_shape, shape


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    first, last, norm = (shape(image_proj, k) for k in ("proj.0.weight", "proj.2.weight", "norm.weight"))
    if first is None or last is None or norm is None or "proj.3.weight" in image_proj:
        return None
    id_dim, hidden, context = first[1], first[0], norm[0]
    tokens = last[0] // context
    perceiver_in = shape(image_proj, "perceiver_resampler.proj_in.weight")
    unet_context = context_dim_of(ip_adapter)
    kolors = perceiver_in is not None and context == 4096
    if unet_context != (2048 if kolors else context):  # projection and attention from different families
        return None
    family = family_of(unet_context or context)
    fam = "SD1.5" if family == "sd15" else "SDXL"
    if perceiver_in is not None:
        clip_dim = perceiver_in[1]
        depth, heads, ff_mult = perceiver_shape(image_proj, "perceiver_resampler.", context)

        def build() -> ProjModelFaceIdPlus:
            return ProjModelFaceIdPlus(context, id_dim, clip_dim, tokens, hidden // id_dim, depth, heads, ff_mult)

        if kolors:
            return ModelKind(
                kind="kolors_faceid_plus", label="Kolors FaceID-Plus", family="kolors",
                context_dim=unet_context or 2048,
                tokens=tokens, encoder_output="penultimate_hidden_states", encoder_width=clip_dim, face=True,
                face_embedding="normed", shortcut=True, image_size=336,
                build=build,
            )
        return ModelKind(
            kind="faceid_plus", label=f"FaceID-Plus {fam} (v1 or v2)", family=family, context_dim=context,
            tokens=tokens, encoder_output="penultimate_hidden_states", encoder_width=clip_dim, face=True,
            face_embedding="normed", needs_lora=True, plus_v2_possible=True,
            build=build,
        )
    lora = has_face_lora(ip_adapter)
    return ModelKind(
        kind="faceid" if lora else "faceid_portrait",
        label=f"FaceID {fam}" if lora else f"FaceID Portrait {fam}",
        family=family, context_dim=context, tokens=tokens, encoder_output=None, encoder_width=None, face=True,
        face_embedding="normed", needs_lora=lora,
        build=lambda: MLPProjModelFaceId(context, id_dim, tokens),
    )
