"""One cross-attention layer: our attn2 patch vs diffusers' IP-Adapter attention processor.

diffusers runs ``Attention`` with ``IPAdapterAttnProcessor2_0`` (loaded by its own converter from
the published ``ip_adapter`` section) on (text, per-row image tokens) at scale w. We feed our
``CrossAttentionPatch`` the same block's q/k/v projections, exactly as ComfyUI does for an attn2
replacement, and apply the block's ``to_out`` to the result.

ComfyUI batches one chunk per conditioning (``cond_or_uncond``: 0 = positive, 1 = negative); diffusers
takes a token set per row, so its rows get the positive or negative tokens of their chunk.
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers.models.attention_processor import Attention

from ipadapter_core.adapter import IPAdapterModel, build_application
from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from ipadapter_core.few_token_attention import worthwhile
from ipadapter_core.loading import split_adapter_sections
from ipadapter_core.sites import Site
from ipadapter_core.weighting import LayerWeight
from tests.fixtures.adapters import adapter_state_dict
from tests.parity import assert_close, comfy_key, comfy_sites, diffusers_ip_processors, processor_names
from tests.parity.test_projection import encoder_output

PER_CHUNK = 2  # latents per cond/uncond chunk
TEXT_TOKENS = 77
HIDDEN_STD = 4.0  # large enough that the softmax over image tokens is far from uniform

# SD1.5: a 320-wide, 8-head layer late in the file (n = 27), full published layout.
SD15_PROC = "up_blocks.3.attentions.1.transformer_blocks.0.attn2.processor"
# SDXL: the second block of the first 640-wide transformer (10 heads, n = 3), in a file reduced to its
# first two layers so the 340 M-parameter K/V section is not generated.
SDXL_PROC = "down_blocks.1.attentions.0.transformer_blocks.1.attn2.processor"


@functools.cache
def layer_setup(name: str, family: str):
    """(adapter, our sites, the site under test, diffusers Attention with its IP processor)."""
    if family == "sd15":
        sd = adapter_state_dict(name, seed=1, dtype=torch.float32)
        sites, proc_name, names = comfy_sites("sd15"), SD15_PROC, None
    else:
        sd = adapter_state_dict(name, seed=1, dtype=torch.float32, sites=[640, 640])
        sites = [Site(("input", 4, k), 0, 640, 10) for k in range(2)]
        proc_name = SDXL_PROC
        names = processor_names("sdxl")[:4]  # attn1/attn2 of its two blocks: numbers 1 and 3
    adapter = IPAdapterModel(split_adapter_sections(sd), name)
    site = next(s for s in sites if s.key == comfy_key(proc_name))
    processor = diffusers_ip_processors(sd, family, names)[proc_name]

    torch.manual_seed(1234)
    attn = Attention(
        query_dim=site.inner_dim, cross_attention_dim=adapter.kind.context_dim, heads=site.heads,
        dim_head=site.inner_dim // site.heads, processor=processor,
    ).eval()
    return adapter, sites, site, attn


def tokens_for(adapter: IPAdapterModel, name: str, images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) image tokens ``[images, T, C]``; uncond as the pack makes it for the encoder output type."""
    cond_in = encoder_output(name, images, seed)
    uncond_in = torch.zeros_like(cond_in) if cond_in.dim() == 2 else encoder_output(name, images, seed + 1)
    return adapter.project(cond_in), adapter.project(uncond_in)


def diffusers_rows(cond: torch.Tensor, uncond: torch.Tensor, cou: list[int], unfold: bool) -> torch.Tensor:
    """Per-row image tokens for diffusers: each chunk's rows get its branch's tokens.

    Without unfold every row sees all reference images (their tokens concatenated); with it, row i
    of a chunk sees image i only.
    """
    rows = []
    for chunk in cou:
        tokens = uncond if chunk == 1 else cond
        if unfold:
            rows.append(tokens[:PER_CHUNK])
        else:
            rows.append(tokens.reshape(1, -1, tokens.shape[-1]).expand(PER_CHUNK, -1, -1))
    return torch.cat(rows)


def run_both(name, family, w, cou, images=1, unfold=False, seed=0, kernel="library"):
    adapter, sites, site, attn = layer_setup(name, family)
    cond, uncond = tokens_for(adapter, name, images, seed=100 + seed)
    gen = torch.Generator().manual_seed(seed)
    batch = PER_CHUNK * len(cou)
    hidden = HIDDEN_STD * torch.randn(batch, 48, site.inner_dim, generator=gen)
    text = torch.randn(batch, TEXT_TOKENS, adapter.kind.context_dim, generator=gen)

    attn.processor.scale = [w]
    with torch.no_grad():
        want = attn(hidden, encoder_hidden_states=(text, [diffusers_rows(cond, uncond, cou, unfold)]))

        app = build_application(
            adapter, sites, cond, uncond, {site.key: LayerWeight(w)}, embeds_scaling="V only", unfold=unfold
        )
        patch = CrossAttentionPatch(site.key, (app,), sdpa_attention, few_tokens=KERNELS[kernel])
        extra = {"n_heads": site.heads, "cond_or_uncond": list(cou), "sigmas": torch.tensor([1.0] * batch)}
        out = patch(attn.to_q(hidden), attn.to_k(text), attn.to_v(text), extra)
        got = attn.to_out[1](attn.to_out[0](out))

        attn.processor.scale = [0.0]
        text_only = attn(hidden, encoder_hidden_states=(text, [diffusers_rows(cond, uncond, cou, unfold)]))
    return got, want, text_only


# The image tokens through the attention function, or (where its policy takes them: fp32 CPU, <= 16 tokens)
# through few_token_attention's products.
KERNELS = {"library": None, "few-token": lambda q, extra, heads, tokens: worthwhile(q, heads, tokens)}
CASES = [
    ("ip-adapter_sd15.safetensors", "sd15"),
    ("ip-adapter-plus_sd15.safetensors", "sd15"),
    ("ip-adapter-full-face_sd15.safetensors", "sd15"),
    ("ip-adapter_sdxl_vit-h.safetensors", "sdxl"),
    ("ip-adapter-plus_sdxl_vit-h.safetensors", "sdxl"),
]


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("cou", [[0, 1], [1, 0]], ids=["cond-uncond", "uncond-cond"])
@pytest.mark.parametrize("w", [0.0, 0.7, 1.3])
@pytest.mark.parametrize("name, family", CASES, ids=[c[0].split(".")[0] for c in CASES])
def test_layer_output_matches_diffusers(name, family, w, cou, kernel):
    got, want, text_only = run_both(name, family, w, cou, kernel=kernel)
    assert_close(got, want)
    if w:  # the image branch must carry weight, or a patch that drops it would pass
        assert (want - text_only).abs().max() > 1e-2


@pytest.mark.parametrize("name, family", [CASES[0], CASES[4]], ids=["sd15-basic", "sdxl-plus"])
def test_two_reference_images_concatenate_like_diffusers(name, family):
    """Several images without unfold: every latent attends to all their tokens at once."""
    got, want, _ = run_both(name, family, 0.9, [1, 0], images=2, seed=3)
    assert_close(got, want)


@pytest.mark.parametrize("name, family", [CASES[0], CASES[1]], ids=["sd15-basic", "sd15-plus"])
def test_unfolded_batch_gives_latent_i_image_i(name, family):
    """Batch (unfold) mode: image i conditions latent i, in both chunks."""
    got, want, _ = run_both(name, family, 1.1, [0, 1], images=PER_CHUNK, unfold=True, seed=4)
    assert_close(got, want)
