"""Plus adapters (plus, plus-face, composition, Kolors plus): a Resampler over CLIP hidden states.

Portrait-unnorm FaceID also uses a Resampler, over a single raw 512-d face embedding; it is told
apart by that input width, not by its file name.
"""

from __future__ import annotations

from ..projection import Resampler
from .base import ModelKind, context_dim_of, family_of, perceiver_shape, shape

FACE_EMBED_DIM = 512


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    latents, proj_in = shape(image_proj, "latents"), shape(image_proj, "proj_in.weight")
    proj_out, to_q = shape(image_proj, "proj_out.weight"), shape(image_proj, "layers.0.0.to_q.weight")
    if latents is None or proj_in is None or proj_out is None or to_q is None:
        return None
    dim, queries, embedding_dim, output_dim = latents[2], latents[1], proj_in[1], proj_out[0]
    depth, heads, ff_mult = perceiver_shape(image_proj, "", dim)
    context = context_dim_of(ip_adapter)
    if context != output_dim:
        return None

    def build() -> Resampler:
        return Resampler(dim, depth, 64, heads, queries, embedding_dim, output_dim, ff_mult)

    family = family_of(context)
    common = dict(context_dim=context, tokens=queries, build=build)
    if embedding_dim == FACE_EMBED_DIM:
        return ModelKind(
            kind="faceid_portrait_unnorm", label=f"FaceID Portrait UNNORM {family_of(context).upper()}",
            family=family, encoder_output=None, encoder_width=None, face=True, face_embedding="raw", **common,
        )
    if dim == 2048 and context == 2048:
        return ModelKind(
            kind="kolors_plus", label="Kolors IP-Adapter-Plus", family="kolors",
            encoder_output="penultimate_hidden_states", encoder_width=embedding_dim, image_size=336, **common,
        )
    return ModelKind(
        kind="plus", label=f"{'SD1.5' if family == 'sd15' else 'SDXL'} plus / plus-face / composition",
        family=family, encoder_output="penultimate_hidden_states", encoder_width=embedding_dim, **common,
    )
