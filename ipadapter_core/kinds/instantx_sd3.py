"""InstantX SD3.5-Large-IP-Adapter: a timestep-conditioned resampler over SigLIP penultimate hidden states.

The resampler has the plus adapters' perceiver layers plus a time embedding and per-layer AdaLN, so
``time_embedding.*`` (projection) and ``{i}.norm_ip.linear`` (attention) are its fingerprint; a UNet
plus adapter has neither. Every size, the depth and the head count are read from the tensors.
"""

from __future__ import annotations

import re

from torch import nn

from .base import ModelKind, perceiver_shape, shape
from .blocks import LayoutMismatch, need, uniform_blocks

FAMILY = "SD3.5 InstantX"
EXPECTED = ("an InstantX SD3.5 IP-Adapter: image_proj latents/proj_in/layers/proj_out/norm_out/time_embedding "
            "(TimeResampler) and, for every joint block i, norm_ip.linear, to_k_ip, to_v_ip and "
            "norm_q/norm_k/norm_ip_k weights")
NAMES = ("norm_ip.linear.weight", "norm_ip.linear.bias", "to_k_ip.weight", "to_v_ip.weight", "norm_q.weight",
         "norm_k.weight", "norm_ip_k.weight")
_NORM_IP = re.compile(r"^\d+\.norm_ip\.")
SD35_LARGE_HIDDEN = 2432  # only for the label: SD3.5-Large is the one published model of this family


def label_for(hidden: int, tokens: int) -> str:
    model = "SD3.5-Large" if hidden == SD35_LARGE_HIDDEN else f"SD3.5 (hidden {hidden})"
    return f"{model} InstantX ({tokens} tokens)"


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    if "time_embedding.linear_1.weight" not in image_proj and not any(_NORM_IP.match(k) for k in ip_adapter):
        return None
    latents = need(shape(image_proj, "latents"), 3, "latents", FAMILY, EXPECTED)
    queries, dim = latents[1], latents[2]
    embedding_dim = need(shape(image_proj, "proj_in.weight"), 2, "proj_in.weight", FAMILY, EXPECTED)[1]
    output_dim = need(shape(image_proj, "proj_out.weight"), 2, "proj_out.weight", FAMILY, EXPECTED)[0]
    t_in = need(shape(image_proj, "time_embedding.linear_1.weight"), 2, "time_embedding.linear_1.weight",
                FAMILY, EXPECTED)[1]
    depth, heads, ff_mult = perceiver_shape(image_proj, "", dim)
    to_q = shape(image_proj, "layers.0.0.to_q.weight")
    layers = {int(m.group(1)) for k in image_proj if (m := re.match(r"^layers\.(\d+)\.0\.to_q\.weight$", k))}
    if not depth or layers != set(range(depth)) or to_q is None or to_q[0] % 64:
        raise LayoutMismatch(FAMILY, f"its resampler layers are incomplete (to_q found for layers "
                             f"{sorted(layers) or 'none'}, layer 0's is {list(to_q) if to_q else 'missing'})", EXPECTED)
    missing_adaln = [f"layers.{i}.2.1.weight" for i in range(depth) if f"layers.{i}.2.1.weight" not in image_proj]
    if missing_adaln:
        raise LayoutMismatch(FAMILY, f"its resampler lacks {', '.join(missing_adaln[:3])}", EXPECTED)
    blocks, first = uniform_blocks(ip_adapter, NAMES, FAMILY, EXPECTED)
    hidden, reads = need(first["to_k_ip.weight"], 2, "to_k_ip.weight", FAMILY, EXPECTED)
    ada_out, temb = need(first["norm_ip.linear.weight"], 2, "norm_ip.linear.weight", FAMILY, EXPECTED)
    wrong = []
    if reads != output_dim or first["to_v_ip.weight"] != (hidden, output_dim):
        wrong.append(f"its K/V ({list(first['to_k_ip.weight'])}, {list(first['to_v_ip.weight'])}) do not read "
                     f"the resampler's {output_dim}-wide tokens")
    if temb != dim or ada_out != 2 * output_dim:
        wrong.append(f"norm_ip.linear is {[ada_out, temb]}, not [{2 * output_dim}, {dim}] (shift and scale of the "
                     f"tokens from the {dim}-wide time embedding)")
    if wrong:
        raise LayoutMismatch(FAMILY, "; ".join(wrong), EXPECTED)

    def build() -> nn.Module:
        from ..dit.time_resampler import TimeResampler  # imported when built: detection needs only shapes

        return TimeResampler(dim=dim, depth=depth, heads=heads, num_queries=queries, embedding_dim=embedding_dim,
                             output_dim=output_dim, ff_mult=ff_mult, timestep_in_dim=t_in)

    return ModelKind(
        kind="instantx_sd3",
        label=label_for(hidden, queries),
        family="sd3",
        context_dim=output_dim,
        tokens=queries,
        encoder_output="penultimate_hidden_states",
        encoder_width=embedding_dim,
        build=build,
        image_size=384,
        arch="mmdit",
        hidden=hidden,
        blocks=blocks,
    )
