"""Image tokens of the DiT adapters: our projection modules vs diffusers (or, for InstantX Flux, the spec's math).

Random weights in the published key layouts (tests/fixtures/dit_adapters.py, reduced widths). diffusers
converts the same sections with its own loader code, so its renames are exercised too; our side loads
them unrenamed with ``strict=True``.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from diffusers.loaders.transformer_flux import FluxTransformer2DLoadersMixin
from diffusers.loaders.transformer_sd3 import SD3Transformer2DLoadersMixin

from ipadapter_core.dit.time_resampler import TimeResampler, timestep_features
from ipadapter_core.projection import ImageProjModel, MLPProjModelFaceId
from tests.fixtures.dit_adapters import (
    instantx_flux_state_dict,
    instantx_sd3_specs,
    instantx_sd3_state_dict,
    xlabs_state_dict,
)
from tests.parity import assert_close

# diffusers' SD3 converter hard-wires depth 4 and 64-wide heads; r_dim 128 -> 2 heads.
SD3 = dict(r_dim=128, queries=8, embed=64, hidden=128, n_blocks=1)
SIGLIP_TOKENS = 27  # any sequence length works; the real 729 only costs time


def _sd3_image_proj(seed: int = 0) -> dict[str, torch.Tensor]:
    return instantx_sd3_state_dict(seed=seed, dtype=torch.float32, **SD3)["image_proj"]


@functools.cache
def sd3_pair(seed: int = 0) -> tuple[TimeResampler, torch.nn.Module]:
    image_proj = _sd3_image_proj(seed)
    ours = TimeResampler(dim=SD3["r_dim"], depth=4, heads=SD3["r_dim"] // 64, num_queries=SD3["queries"],
                         embedding_dim=SD3["embed"], output_dim=SD3["hidden"])
    ours.load_state_dict(image_proj, strict=True)
    theirs = SD3Transformer2DLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(
        SimpleNamespace(), dict(image_proj), low_cpu_mem_usage=False
    )
    return ours.eval(), theirs.float().eval()


def _features(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, SIGLIP_TOKENS, SD3["embed"], generator=torch.Generator().manual_seed(seed))


# --- SD3.5 InstantX: TimeResampler vs diffusers IPAdapterTimeImageProjection --------------------


@pytest.mark.parametrize("t", [999.0, 500.0, 1.0])
def test_time_resampler_matches_diffusers(t):
    ours, theirs = sd3_pair()
    x = _features(2, seed=3)
    tokens, temb = ours(x, torch.tensor([t, t]))
    with torch.no_grad():
        want_tokens, want_temb = theirs(x, torch.tensor([t, t]))
    assert tokens.shape == (2, SD3["queries"], SD3["hidden"]) and temb.shape == (2, SD3["r_dim"])
    assert_close(temb, want_temb, atol=1e-6, rtol=1e-5)
    assert_close(tokens, want_tokens, atol=1e-5, rtol=1e-5)
    assert (tokens[0] - tokens[1]).abs().max() > 1e-2  # the features reach the tokens


def test_time_resampler_mixed_timesteps_in_one_batch():
    """One call for rows at different steps equals diffusers' batch and each row computed alone."""
    ours, theirs = sd3_pair()
    x = _features(3, seed=4)
    t = torch.tensor([999.0, 500.0, 1.0])
    tokens, temb = ours(x, t)
    with torch.no_grad():
        want_tokens, want_temb = theirs(x, t)
    assert_close(tokens, want_tokens, atol=1e-5, rtol=1e-5)
    assert_close(temb, want_temb, atol=1e-6, rtol=1e-5)
    for row in range(3):
        alone, _ = ours(x[row : row + 1], t[row : row + 1])
        assert_close(alone, tokens[row : row + 1], atol=1e-6, rtol=1e-6)
    # Same features at another step must give other tokens, or the timestep would be ignored.
    same, _ = ours(x[:1].expand(2, -1, -1), torch.tensor([999.0, 1.0]))
    assert (same[0] - same[1]).abs().max() > 1e-2


def test_time_resampler_scalar_timestep_is_shared_by_rows():
    ours, theirs = sd3_pair()
    x = _features(2, seed=5)
    tokens, temb = ours(x, 250.0)
    with torch.no_grad():
        want_tokens, want_temb = theirs(x, torch.tensor([250.0, 250.0]))
    assert_close(tokens, want_tokens, atol=1e-5, rtol=1e-5)
    assert_close(ours(x, torch.tensor(250.0))[1], want_temb, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="timestep has 3 values"):
        ours(x, torch.tensor([1.0, 2.0, 3.0]))


def test_timestep_features_cos_first_no_shift():
    """Checked against the closed form (not against diffusers): [cos(t f_i), sin(t f_i)], f_i = 10000^(-i/half)."""
    t = torch.tensor([0.0, 1.0, 999.0])
    got = timestep_features(t, 8).double()
    freqs = torch.tensor([10000.0 ** (-i / 4) for i in range(4)], dtype=torch.float64)
    angles = t.double()[:, None] * freqs
    torch.testing.assert_close(got, torch.cat((angles.cos(), angles.sin()), dim=-1), atol=1e-4, rtol=1e-5)
    assert timestep_features(t, 7)[:, -1].abs().max() == 0  # odd width: zero pad column


def test_time_resampler_published_layout_loads_strictly():
    """Full-size SD3.5-Large image_proj shapes (meta tensors, no memory) fit TimeResampler(1280, 4, 20, 64, ...)."""
    specs = instantx_sd3_specs()["image_proj"]
    sd = {key: torch.empty(shape, device="meta") for key, shape, _ in specs}
    with torch.device("meta"):
        model = TimeResampler(1280, 4, 20, 64, 1152, 2432)
    model.load_state_dict(sd, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in sd.values())


# --- XLabs Flux: ImageProjModel vs diffusers ImageProjection ----------------------------------


@pytest.mark.parametrize("tokens, clip_dim", [(4, 768), (16, 128)])
def test_xlabs_projection_matches_diffusers(tokens, clip_dim):
    """16 tokens are only recognised by diffusers at proj rows 65536, so context stays 4096 (clip width is free)."""
    flat = xlabs_state_dict(dtype=torch.float32, hidden=64, tokens=tokens, n_double=1, clip_dim=clip_dim)
    prefix = "ip_adapter_proj_model."
    image_proj = {k.removeprefix(prefix): t for k, t in flat.items() if k.startswith(prefix)}
    ours = ImageProjModel(clip_dim, 4096, tokens)
    ours.load_state_dict(image_proj, strict=True)
    theirs = FluxTransformer2DLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(
        SimpleNamespace(), dict(image_proj), low_cpu_mem_usage=False
    ).float()
    embeds = torch.randn(2, clip_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got, want = ours(embeds), theirs(embeds)
    assert got.shape == (2, tokens, 4096)
    assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got[0] - got[1]).abs().max() > 1e-2


# --- InstantX Flux: MLPProjModelFaceId vs the spec's formula (diffusers has no module) --------


def reference_instantx_flux(sd: dict[str, torch.Tensor], pooled: torch.Tensor, tokens: int) -> torch.Tensor:
    """dit-adapters.md §2.2: LayerNorm_ctx(reshape(W2 GELU(W1 p + b1) + b2, [N, ctx])), exact GELU, float64."""
    d = {k: v.double() for k, v in sd.items()}
    h = F.gelu(F.linear(pooled.double(), d["proj.0.weight"], d["proj.0.bias"]))
    out = F.linear(h, d["proj.2.weight"], d["proj.2.bias"]).reshape(pooled.shape[0], tokens, -1)
    return F.layer_norm(out, out.shape[-1:], d["norm.weight"], d["norm.bias"], eps=1e-5)


def test_instantx_flux_projection_matches_spec_math():
    siglip, tokens, context = 64, 4, 4096
    sd = instantx_flux_state_dict(dtype=torch.float32, hidden=64, tokens=tokens, n_blocks=1, siglip=siglip)
    image_proj = sd["image_proj"]
    ours = MLPProjModelFaceId(context_dim=context, id_dim=siglip, tokens=tokens)
    ours.load_state_dict(image_proj, strict=True)
    pooled = torch.randn(3, siglip, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        got = ours(pooled)
    want = reference_instantx_flux(image_proj, pooled, tokens)
    assert got.shape == (3, tokens, context)
    assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    assert (got[0] - got[1]).abs().max() > 1e-2
    # The activation is the exact GELU: the tanh approximation is measurably different on these weights.
    d = {k: v.double() for k, v in image_proj.items()}
    h = F.gelu(F.linear(pooled.double(), d["proj.0.weight"], d["proj.0.bias"]), approximate="tanh")
    tanh_out = F.layer_norm(F.linear(h, d["proj.2.weight"], d["proj.2.bias"]).reshape(3, tokens, -1), (context,),
                            d["norm.weight"], d["norm.bias"])
    assert (tanh_out - want).abs().max() > 1e-4 > (got.double() - want).abs().max()
