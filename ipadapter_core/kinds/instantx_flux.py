"""InstantX FLUX.1-dev-IP-Adapter: an MLP over SigLIP's pooled vector, bias-free K/V for every block.

Its projection (``proj.0``, GELU, ``proj.2``, reshape, LayerNorm ``norm``) has the FaceID Portrait
layout, and UNet FaceID files also carry ``proj.0/proj.2/norm``; what tells it apart is the K/V
section, numbered 0..n-1 over double then single blocks (a UNet adapter's K/V are the odd entries).
"""

from __future__ import annotations

from ..projection import MLPProjModelFaceId
from .base import ModelKind, shape
from .blocks import LayoutMismatch, has_lora, is_transformer_layout, need, uniform_blocks

FAMILY = "Flux InstantX"
EXPECTED = ("an InstantX FLUX.1-dev-IP-Adapter: image_proj proj.0/proj.2/norm (Linear, GELU, Linear, LayerNorm) and "
            "ip_adapter {k}.to_k_ip/to_v_ip.weight for k = 0..n-1, all one shape [hidden, token width]")
NAMES = ("to_k_ip.weight", "to_v_ip.weight")
PROJ_KEYS = {f"{p}.{w}" for p in ("proj.0", "proj.2", "norm") for w in ("weight", "bias")}


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    if not {"proj.0.weight", "proj.2.weight", "norm.weight"} <= set(image_proj):
        return None
    if not is_transformer_layout(ip_adapter):
        return None
    extra, lacking = sorted(set(image_proj) - PROJ_KEYS), sorted(PROJ_KEYS - set(image_proj))
    if extra or lacking:
        what = [f"unexpected keys {', '.join(extra[:3])}"] if extra else []
        what += [f"no {', '.join(lacking)}"] if lacking else []
        raise LayoutMismatch(FAMILY, f"its projection has {' and '.join(what)}", EXPECTED)
    if has_lora(ip_adapter):
        raise LayoutMismatch(FAMILY, "its attention section also holds LoRA weights (a FaceID trait)", EXPECTED)
    first = need(shape(image_proj, "proj.0.weight"), 2, "proj.0.weight", FAMILY, EXPECTED)
    last = need(shape(image_proj, "proj.2.weight"), 2, "proj.2.weight", FAMILY, EXPECTED)
    context = need(shape(image_proj, "norm.weight"), 1, "norm.weight", FAMILY, EXPECTED)[0]
    hidden_mlp, pooled = first
    if hidden_mlp != 2 * pooled or last[1] != hidden_mlp:
        raise LayoutMismatch(FAMILY, f"its MLP is {pooled} -> {hidden_mlp} -> {last[1]}, not "
                             f"{pooled} -> {2 * pooled} -> {2 * pooled}", EXPECTED)
    if last[0] % context:
        raise LayoutMismatch(FAMILY, f"its projection makes {last[0]} values, not a whole number of "
                             f"{context}-wide tokens", EXPECTED)
    blocks, kv = uniform_blocks(ip_adapter, NAMES, FAMILY, EXPECTED)
    hidden, reads = need(kv["to_k_ip.weight"], 2, "to_k_ip.weight", FAMILY, EXPECTED)
    if reads != context or kv["to_v_ip.weight"] != (hidden, context):
        raise LayoutMismatch(FAMILY, f"its K/V are {list(kv['to_k_ip.weight'])} / {list(kv['to_v_ip.weight'])} but "
                             f"its projection makes {context}-wide tokens", EXPECTED)
    tokens = last[0] // context
    return ModelKind(
        kind="instantx_flux",
        label=f"Flux InstantX ({tokens} tokens)",
        family="flux",
        context_dim=context,
        tokens=tokens,
        encoder_output="siglip_pooled",
        encoder_width=pooled,
        build=lambda: MLPProjModelFaceId(context, pooled, tokens),
        image_size=384,
        arch="flux",
        hidden=hidden,
        blocks=blocks,
    )
