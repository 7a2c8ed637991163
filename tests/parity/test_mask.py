"""Attention masks: our ``mask=`` path vs diffusers' ``ip_adapter_masks``.

Both gate the image branch's *output* per query token, for cond and uncond rows alike:
``out = text + w * mask * ip``. They resize the mask to the layer's token grid differently: we use
bilinear interpolation (as the incumbent pack), diffusers bicubic (``IPAdapterMaskProcessor.downsample``).
For a binary mask both are exact at the grid size and at any block-aligned integer factor >= 3
(every tap of both kernels falls inside one block), so those match to fp32 precision. At factor 2
bicubic's outer taps reach the neighbouring blocks, weighted (-0.094, 0.594, 0.594, -0.094) per
axis (PyTorch's a = -0.75): diffusers' gate then over/undershoots at mask edges (1.09, -0.09, and
from -0.44 to 1.45 where cells of both values surround a token), while ours stays 0/1. Tokens
whose whole neighbourhood is one value still agree.
"""

from __future__ import annotations

import pytest
import torch
from diffusers.image_processor import IPAdapterMaskProcessor

from ipadapter_core.adapter import build_application
from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from ipadapter_core.weighting import LayerWeight
from tests.parity import assert_close
from tests.parity.test_attention import (
    HIDDEN_STD,
    KERNELS,
    PER_CHUNK,
    TEXT_TOKENS,
    diffusers_rows,
    layer_setup,
    tokens_for,
)

NAME, FAMILY = "ip-adapter_sd15.safetensors", "sd15"
GRID = (6, 8)  # the layer's token grid (h, w): 48 query tokens, not square
COU = [1, 0]
W = 1.2


def block_mask(factor: int, seed: int = 0) -> torch.Tensor:
    """A random binary mask on the token grid, upscaled by ``factor`` in blocks: [1, h*factor, w*factor]."""
    cells = (torch.rand(1, *GRID, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    return cells.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


def run_masked(mask: torch.Tensor, kernel: str = "library"):
    adapter, sites, site, attn = layer_setup(NAME, FAMILY)
    cond, uncond = tokens_for(adapter, NAME, 1, seed=7)
    gen = torch.Generator().manual_seed(2)
    batch = PER_CHUNK * len(COU)
    hidden = HIDDEN_STD * torch.randn(batch, GRID[0] * GRID[1], site.inner_dim, generator=gen)
    text = torch.randn(batch, TEXT_TOKENS, adapter.kind.context_dim, generator=gen)
    rows = diffusers_rows(cond, uncond, COU, unfold=False)

    attn.processor.scale = [W]
    with torch.no_grad():
        # diffusers' masked path wants [batch, images, tokens, width] and one [1, images, H, W] mask per adapter.
        want = attn(hidden, encoder_hidden_states=(text, [rows.unsqueeze(1)]), ip_adapter_masks=[mask.unsqueeze(0)])

        app = build_application(adapter, sites, cond, uncond, {site.key: LayerWeight(W)}, mask=mask)
        extra = {
            "n_heads": site.heads, "cond_or_uncond": COU, "sigmas": torch.tensor([1.0]),
            "activations_shape": [batch, site.inner_dim, *GRID],  # what ComfyUI's SpatialTransformer records
        }
        patch = CrossAttentionPatch(site.key, (app,), sdpa_attention, few_tokens=KERNELS[kernel])
        out = patch(attn.to_q(hidden), attn.to_k(text), attn.to_v(text), extra)
        got = attn.to_out[1](attn.to_out[0](out))

        attn.processor.scale = [W]
        unmasked = attn(hidden, encoder_hidden_states=(text, [rows]))
    return got, want, unmasked


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("factor", [1, 3, 4, 8])
def test_binary_mask_matches_diffusers(factor, kernel):
    mask = block_mask(factor)
    got, want, unmasked = run_masked(mask, kernel)
    assert_close(got, want)
    # The mask must act: masked-out tokens differ from the unmasked layer, masked-in ones do not.
    gate = block_mask(1)[0].reshape(-1).bool()
    assert (want - unmasked)[:, ~gate].abs().max() > 1e-2
    assert_close(want[:, gate], unmasked[:, gate])


def test_factor_two_mask_differs_only_at_edges():
    """Documents the resize difference (bilinear vs diffusers' bicubic) instead of hiding it."""
    mask = block_mask(2, seed=1)
    got, want, _ = run_masked(mask)

    theirs = IPAdapterMaskProcessor.downsample(mask, 1, GRID[0] * GRID[1], 1).reshape(GRID)
    cells = block_mask(1, seed=1)[0]
    assert ((theirs - cells).abs() > 1e-3).any(), "diffusers' downsample now keeps a factor-2 binary mask exact"
    exact = ((theirs - cells).abs() < 1e-6).reshape(-1)
    assert_close(got[:, exact], want[:, exact])
    assert (got[:, ~exact] - want[:, ~exact]).abs().max() > 1e-3
