"""XLabs flux-ip-adapter v1/v2: ImageProjModel over CLIP ViT-L ``image_embeds``, K/V with bias per double block.

The loader renames the flat file to ``image_proj`` {proj, norm} and ``ip_adapter``
``"{i}.to_{k,v}_ip.{weight,bias}"``. Biased K/V are the fingerprint: no UNet adapter has them.
v1 and v2 differ only in the token count, read from ``proj`` rows / ``norm`` width.
"""

from __future__ import annotations

import re

from ..projection import ImageProjModel
from .base import ModelKind, shape
from .blocks import LayoutMismatch, need, uniform_blocks

FAMILY = "Flux XLabs"
EXPECTED = ("an XLabs flux-ip-adapter: ip_adapter_proj_model.{proj,norm} and, for every double block i, "
            "ip_adapter_double_stream_{k,v}_proj.{weight,bias} reading the norm's width")
NAMES = ("to_k_ip.weight", "to_k_ip.bias", "to_v_ip.weight", "to_v_ip.bias")
PROJ_KEYS = {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
_BIAS = re.compile(r"^\d+\.to_[kv]_ip\.bias$")


def label_for(tokens: int) -> str:
    version = {4: "v1 ", 16: "v2 "}.get(tokens, "")
    return f"Flux XLabs {version}({tokens} tokens)"


def detect(image_proj: dict, ip_adapter: dict) -> ModelKind | None:
    if not any(_BIAS.match(k) for k in ip_adapter):
        return None
    extra, lacking = sorted(set(image_proj) - PROJ_KEYS), sorted(PROJ_KEYS - set(image_proj))
    if extra or lacking:
        what = [f"unexpected keys {', '.join(extra[:3])}"] if extra else []
        what += [f"no {', '.join(lacking)}"] if lacking else []
        raise LayoutMismatch(FAMILY, f"its projection has {' and '.join(what)}", EXPECTED)
    proj = need(shape(image_proj, "proj.weight"), 2, "proj.weight", FAMILY, EXPECTED)
    context = need(shape(image_proj, "norm.weight"), 1, "norm.weight", FAMILY, EXPECTED)[0]
    if proj[0] % context:
        raise LayoutMismatch(FAMILY, f"its projection makes {proj[0]} values, not a whole number of "
                             f"{context}-wide tokens", EXPECTED)
    blocks, first = uniform_blocks(ip_adapter, NAMES, FAMILY, EXPECTED)
    hidden, reads = need(first["to_k_ip.weight"], 2, "to_k_ip.weight", FAMILY, EXPECTED)
    if reads != context:
        raise LayoutMismatch(FAMILY, f"its K/V read {reads}-wide tokens but its projection makes {context}-wide "
                             "tokens (projection and attention from different files)", EXPECTED)
    want = {"to_v_ip.weight": (hidden, context), "to_k_ip.bias": (hidden,), "to_v_ip.bias": (hidden,)}
    wrong = [f"{n} is {list(first[n])}, not {list(s)}" for n, s in want.items() if first[n] != s]
    if wrong:
        raise LayoutMismatch(FAMILY, "; ".join(wrong), EXPECTED)
    tokens, clip_dim = proj[0] // context, proj[1]
    return ModelKind(
        kind="xlabs_flux",
        label=label_for(tokens),
        family="flux",
        context_dim=context,
        tokens=tokens,
        encoder_output="image_embeds",
        encoder_width=clip_dim,
        build=lambda: ImageProjModel(clip_dim, context, tokens),
        image_size=224,
        arch="flux",
        hidden=hidden,
        blocks=blocks,
    )
