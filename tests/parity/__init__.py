"""Peer parity: the same published-layout weights run through diffusers and through ipadapter_core.

diffusers is only a reference here. Its own loader code turns an original-format adapter into its
modules (``UNet2DConditionLoadersMixin._convert_ip_adapter_*``), so the tests exercise its key
conversion as well as its maths; our side reads the same dict with no renaming.

The helpers below give both sides the same UNet: diffusers' processor names come from a tiny
diffusers UNet of the SD1.5 or SDXL block structure, our ``Site`` list is written in ComfyUI's
order (input, middle, output), and ``comfy_key`` maps a diffusers processor name to the ComfyUI
attn2 key of the same transformer block.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import torch
from diffusers.loaders.unet import UNet2DConditionLoadersMixin
from diffusers.models.attention_processor import AttnProcessor2_0

from ipadapter_core.sites import Site

# fp32 on both sides: differences come only from operation order (SDPA vs matmul, fused LayerNorm).
ATOL, RTOL = 1e-5, 1e-4

# The real UNets' widths: diffusers sizes each IP processor from these, so the file's shapes must fit.
UNETS = {
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768),
    "sdxl": dict(block_out_channels=(320, 640, 1280), cross_attention_dim=2048),
}


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> None:
    assert ours.shape == theirs.shape, f"shape {tuple(ours.shape)} != diffusers {tuple(theirs.shape)}"
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)


@functools.cache
def processor_names(family: str) -> tuple[str, ...]:
    """diffusers' ``unet.attn_processors`` order for the family's block structure (tiny widths)."""
    from diffusers import UNet2DConditionModel

    common = dict(sample_size=8, layers_per_block=2, norm_num_groups=8, attention_head_dim=8, cross_attention_dim=16)
    if family == "sd15":
        unet = UNet2DConditionModel(block_out_channels=(16, 16, 32, 32), **common)
    elif family == "sdxl":
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            **common,
        )
    else:
        raise ValueError(family)
    return tuple(unet.attn_processors)


_NAME = re.compile(r"(down_blocks|up_blocks|mid_block)\.?(\d*)\.attentions\.(\d+)\.transformer_blocks\.(\d+)\.attn2")


def comfy_key(name: str) -> tuple:
    """diffusers processor name -> ComfyUI attn2 key ``(block, id, block_index)`` (2 resnets per level)."""
    match = _NAME.match(name)
    assert match, name
    block, level, attention, index = match.groups()
    if block == "mid_block":
        return ("middle", 0, int(index))
    level_i, attention_i = int(level), int(attention)
    if block == "down_blocks":  # input block 0 is conv_in; each level has 2 resnets (+attn), then a downsample
        return ("input", 3 * level_i + attention_i + 1, int(index))
    return ("output", 3 * level_i + attention_i, int(index))  # 3 resnets (+attn) per up level


def comfy_sites(family: str) -> list[Site]:
    """Every cross-attention site in ComfyUI's execution order: input blocks, middle, output blocks."""
    if family == "sd15":
        levels_in = [(1, 320, 1), (2, 320, 1), (4, 640, 1), (5, 640, 1), (7, 1280, 1), (8, 1280, 1)]
        middle = (1280, 1)
        levels_out = [(i, 1280, 1) for i in (3, 4, 5)] + [(i, 640, 1) for i in (6, 7, 8)]
        levels_out += [(i, 320, 1) for i in (9, 10, 11)]
        heads = lambda width: 8
    else:
        levels_in = [(4, 640, 2), (5, 640, 2), (7, 1280, 10), (8, 1280, 10)]
        middle = (1280, 10)
        levels_out = [(i, 1280, 10) for i in (0, 1, 2)] + [(i, 640, 2) for i in (3, 4, 5)]
        heads = lambda width: width // 64
    sites: list[Site] = []
    t = 0
    for block, blocks in (("input", levels_in), ("middle", [(0, *middle)]), ("output", levels_out)):
        for block_id, width, depth in blocks:
            sites += [Site((block, block_id, k), t, width, heads(width)) for k in range(depth)]
            t += 1
    return sites


def diffusers_image_projection(image_proj: dict[str, torch.Tensor]) -> torch.nn.Module:
    """diffusers' own conversion of an original-format ``image_proj`` section (as ``load_ip_adapter`` does)."""
    module = UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(
        SimpleNamespace(), image_proj, low_cpu_mem_usage=False
    )
    return module.float().eval()


def diffusers_ip_processors(
    state_dict: dict, family: str, names: tuple[str, ...] | None = None, width_divisor: int = 1
) -> dict:
    """diffusers' own conversion of the ``ip_adapter`` section into its IP attention processors.

    ``names`` defaults to the family's full processor list; a prefix of it suits reduced files
    (their K/V numbering counts the same processors). ``width_divisor`` shrinks the UNet's block
    widths, for files whose layer widths were divided the same way. Returns ``{name: processor}``.
    """
    names = processor_names(family) if names is None else names
    config = dict(UNETS[family])
    config["block_out_channels"] = tuple(c // width_divisor for c in config["block_out_channels"])
    processors = {name: AttnProcessor2_0() for name in names}
    unet = SimpleNamespace(attn_processors=processors, config=SimpleNamespace(**config))
    convert = UNet2DConditionLoadersMixin._convert_ip_adapter_attn_to_diffusers
    procs = convert(unet, [state_dict], low_cpu_mem_usage=False)
    return {name: proc.float().eval() for name, proc in procs.items() if name.endswith("attn2.processor")}
