"""Image tokens: our projection models vs diffusers' IP-Adapter image projections, same weights.

diffusers builds its module and renames the original keys itself (``load_ip_adapter``'s
conversion); we load the section as published. Same random encoder output in, same tokens out.
"""

from __future__ import annotations

import functools

import pytest
import torch

from ipadapter_core.adapter import IPAdapterModel
from ipadapter_core.loading import split_adapter_sections
from tests.fixtures.adapters import adapter_state_dict, layout
from tests.parity import assert_close, diffusers_image_projection

CLIP_TOKENS = 257  # ViT-H/14 at 224: CLS + 16x16 patches


def encoder_output(name: str, n: int, seed: int) -> torch.Tensor:
    """A random stand-in for what the adapter's encoder gives: image_embeds [N, D] or hidden states [N, 257, D]."""
    lay = layout(name)
    gen = torch.Generator().manual_seed(seed)
    shape = (n, lay.encoder_width) if lay.encoder_output == "image_embeds" else (n, CLIP_TOKENS, lay.encoder_width)
    return torch.randn(shape, generator=gen)


@functools.cache
def both_projections(name: str, seed: int = 0):
    # Reduced K/V (one 320-wide layer): the projection never reads them, and SDXL's full K/V is 340 M params.
    sd = adapter_state_dict(name, seed=seed, dtype=torch.float32, sites=[320])
    ours = IPAdapterModel(split_adapter_sections(sd), name)
    theirs = diffusers_image_projection(sd["image_proj"])
    return ours, theirs


@pytest.mark.parametrize(
    "name, kind, tokens",
    [
        ("ip-adapter_sd15.safetensors", "basic", 4),
        ("ip-adapter_sdxl_vit-h.safetensors", "basic", 4),
        ("ip-adapter-plus_sd15.safetensors", "plus", 16),
        ("ip-adapter-plus_sdxl_vit-h.safetensors", "plus", 16),
        ("ip-adapter-full-face_sd15.safetensors", "full_face", 257),
    ],
)
def test_image_tokens_match_diffusers(name, kind, tokens):
    ours, theirs = both_projections(name)
    assert ours.kind.kind == kind
    x = encoder_output(name, n=2, seed=11)

    got = ours.project(x)
    with torch.no_grad():
        want = theirs(x)

    assert got.shape == (2, tokens, layout(name).context_dim)
    assert_close(got, want)
    # The two images must give different tokens, or a projection ignoring its input would pass.
    assert (got[0] - got[1]).abs().max() > 100 * 1e-5


def test_faceid_tokens_match_diffusers():
    name = "ip-adapter-faceid_sd15.bin"
    ours, theirs = both_projections(name)
    face = torch.randn(3, 512, generator=torch.Generator().manual_seed(5))

    got = ours.project(face)
    with torch.no_grad():
        want = theirs(face)

    assert got.shape == (3, 4, 768)
    assert_close(got, want)


@pytest.mark.parametrize("clip_weight", [0.6, 1.7])
def test_faceid_plus_v2_tokens_match_diffusers(clip_weight):
    """v2: ``id_tokens + clip_weight * perceiver(id_tokens, clip)``; diffusers calls it shortcut/shortcut_scale."""
    name = "ip-adapter-faceid-plusv2_sd15.bin"
    ours, theirs = both_projections(name)
    gen = torch.Generator().manual_seed(8)
    face, clip = torch.randn(2, 512, generator=gen), torch.randn(2, CLIP_TOKENS, 1280, generator=gen)

    got = ours.project(face, clip_embeds=clip, clip_weight=clip_weight, shortcut=True)
    theirs.clip_embeds = clip.unsqueeze(1)  # diffusers: [batch, images, tokens, width], set on the module
    theirs.shortcut, theirs.shortcut_scale = True, clip_weight
    with torch.no_grad():
        want = theirs(face)

    assert got.shape == (2, 4, 768)
    assert_close(got, want)


def test_faceid_plus_v1_tokens_match_diffusers():
    """v1 (no shortcut): the perceiver output alone."""
    name = "ip-adapter-faceid-plus_sd15.bin"
    ours, theirs = both_projections(name)
    gen = torch.Generator().manual_seed(9)
    face, clip = torch.randn(2, 512, generator=gen), torch.randn(2, CLIP_TOKENS, 1280, generator=gen)

    got = ours.project(face, clip_embeds=clip)
    theirs.clip_embeds = clip.unsqueeze(1)
    with torch.no_grad():
        want = theirs(face)

    assert_close(got, want)
