"""Cross-attention sites of a UNet and how an adapter file's K/V weights map onto them.

A site is one transformer block's attn2. Files number their K/V weights in diffusers processor
order (down blocks, then up blocks, then the mid block; attn2 = odd numbers), while ComfyUI runs
input -> middle -> output. The numbering is derived from the model's own site list, so reduced
test UNets and every real layout work without hard-coded tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import IPAdapterError

SiteKey = tuple  # (block_name, block_id, block_index), ComfyUI's attn2 replace key


@dataclass(frozen=True)
class Site:
    key: SiteKey
    transformer_index: int  # ComfyUI's global SpatialTransformer counter, what weight types are keyed by
    inner_dim: int
    heads: int

    @property
    def block_type(self) -> str:
        return self.key[0]


def ip_numbering(sites: list[Site]) -> dict[SiteKey, int]:
    """Map each site to the number of its ``{n}.to_k_ip.weight`` in the file (1, 3, 5, ...)."""
    order = [s for s in sites if s.block_type == "input"]
    order += [s for s in sites if s.block_type == "output"]
    order += [s for s in sites if s.block_type == "middle"]
    return {s.key: 2 * i + 1 for i, s in enumerate(order)}


def match_sites(sites: list[Site], ip_adapter: dict[str, torch.Tensor], label: str) -> dict[SiteKey, int]:
    """Check the file has one K/V pair per site with the right widths; return the numbering."""
    numbering = ip_numbering(sites)
    file_numbers = sorted(int(k.split(".")[0]) for k in ip_adapter if k.endswith(".to_k_ip.weight"))
    if len(file_numbers) != len(sites):
        raise IPAdapterError(
            f"The adapter ({label}) has {len(file_numbers)} cross-attention layers but the model has "
            f"{len(sites)}: it was made for a different base model.",
            expected=f"an adapter for a UNet with {len(sites)} cross-attention layers",
            fix="Load an adapter made for this checkpoint's family (SD1.5 adapters for SD1.5 models, SDXL for SDXL).",
            input="ipadapter",
        )
    for site in sites:
        n = numbering[site.key]
        w = ip_adapter.get(f"{n}.to_k_ip.weight")
        if w is None or w.shape[0] != site.inner_dim:
            got = "missing" if w is None else f"width {w.shape[0]}"
            raise IPAdapterError(
                f"The adapter ({label}) does not fit this model: its layer {n} is {got}, the model's "
                f"{site.key} has width {site.inner_dim}.",
                expected="an adapter trained for this model's UNet layout",
                fix="Use an adapter made for this checkpoint's base model family.",
                input="ipadapter",
            )
    return numbering
