"""K/V numbering: the file's ``{n}.to_k_ip`` that diffusers' loader gives a block is the one we give it.

diffusers numbers the files' K/V pairs by walking its ``attn_processors`` (incumbent.md §3.1);
we number them from a ComfyUI-ordered site list (``ip_numbering``). Every site must end up with
the same tensor, and diffusers' width for each block must be the file's width at that number.
"""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.sites import ip_numbering, match_sites
from tests.fixtures.adapters import adapter_state_dict, layout
from tests.parity import comfy_key, comfy_sites, diffusers_ip_processors


@pytest.mark.parametrize(
    "name, family, divisor",
    [
        ("ip-adapter_sd15.safetensors", "sd15", 1),
        # SDXL's real K/V is 340 M parameters; every width divided by 64 keeps the layout (and
        # diffusers' UNet is shrunk alike, so a width mismatch still fails its strict load).
        ("ip-adapter_sdxl_vit-h.safetensors", "sdxl", 64),
    ],
)
def test_every_site_gets_the_same_kv_weights(name, family, divisor):
    sites = comfy_sites(family)
    numbering = match_sites(sites, adapter_state_dict(name, device="meta")["ip_adapter"], name)  # real widths
    assert numbering == ip_numbering(sites)

    widths = [w // divisor for w in layout(name).widths]
    sd = adapter_state_dict(name, seed=3, sites=widths)
    processors = diffusers_ip_processors(sd, family, width_divisor=divisor)

    assert {comfy_key(proc_name) for proc_name in processors} == {site.key for site in sites}
    for proc_name, proc in processors.items():
        n = numbering[comfy_key(proc_name)]
        for part, theirs in (("to_k_ip", proc.to_k_ip[0].weight), ("to_v_ip", proc.to_v_ip[0].weight)):
            ours = sd["ip_adapter"][f"{n}.{part}.weight"].float()
            assert torch.equal(ours, theirs), f"{proc_name}: diffusers loaded a different {part} than file key {n}"
