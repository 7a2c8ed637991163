"""The attn2 patch against an independent float64 implementation of incumbent.md §4.2.

A tiny three-site UNet layout (input, middle, output) and a matching random adapter keep this fast:
the math is the same at any width.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ipadapter_core.adapter import IPAdapterModel, build_application
from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.few_token_attention import worthwhile
from ipadapter_core.loading import split_adapter_sections
from ipadapter_core.sites import Site
from ipadapter_core.weighting import LayerWeight
from tests.fixtures.adapters import adapter_state_dict

CONTEXT = 768
TOKENS = 4  # image tokens per reference (a basic SD1.5 adapter)
IN = Site(("input", 1, 0), 0, 64, 2)
MID = Site(("middle", 0, 0), 1, 128, 4)
OUT = Site(("output", 1, 0), 2, 64, 2)
SITES = [IN, MID, OUT]  # ComfyUI run order
# diffusers numbering in the file: down blocks, then up blocks, then the mid block.
FILE_NUMBER = {IN.key: 1, OUT.key: 3, MID.key: 5}
LATENT = (16, 16)  # original_shape H, W; the sites below run at half resolution: an 8x8 token grid
GRID = (8, 8)


def _few_token_policy(q: torch.Tensor, extra: dict, heads: int, tokens: int) -> bool:
    return worthwhile(q, heads, tokens)


@pytest.fixture(params=["library", "few-token"])
def new_patch(request):
    """Every patch test runs twice: image tokens through the attention function, and through
    few_token_attention's products wherever its policy takes them (fp32 on the CPU here)."""
    policy = _few_token_policy if request.param == "few-token" else None

    def make(site_key: tuple, *args, **kw) -> CrossAttentionPatch:
        return CrossAttentionPatch(site_key, *args, few_tokens=policy, **kw)

    return make


@pytest.fixture(scope="module")
def adapter() -> IPAdapterModel:
    sd = adapter_state_dict("ip-adapter_sd15.safetensors", seed=2, dtype=torch.float32, sites=[64, 64, 128])
    return IPAdapterModel(split_adapter_sections(sd, "tiny.safetensors"), "tiny.safetensors")


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


COND = _randn(1, TOKENS, CONTEXT, seed=10)
UNCOND = _randn(1, TOKENS, CONTEXT, seed=11)
COND2 = _randn(2, TOKENS, CONTEXT, seed=12)  # two reference images
UNCOND2 = _randn(2, TOKENS, CONTEXT, seed=14)  # the caller fits uncond to the number of references


def make_app(adapter, weight: float = 0.7, cond=COND, uncond=UNCOND, weights=None, **kw):
    weights = weights or {s.key: LayerWeight(weight) for s in SITES}
    return build_application(adapter, SITES, cond, uncond, weights, **kw)


def block_inputs(site: Site, cou: list[int], per_chunk: int = 2, seed: int = 0, grid=GRID):
    """q from the latent, k/v from a 77-token text context, as the host hands them to the patch."""
    b = len(cou) * per_chunk
    q = _randn(b, grid[0] * grid[1], site.inner_dim, seed=seed)
    k = _randn(b, 77, site.inner_dim, seed=seed + 1)
    v = _randn(b, 77, site.inner_dim, seed=seed + 2)
    extra = {
        "n_heads": site.heads,
        "cond_or_uncond": list(cou),
        "sigmas": torch.full((b,), 5.0),
        "original_shape": [b, 4, grid[0] * LATENT[0] // GRID[0], grid[1] * LATENT[1] // GRID[1]],
        "transformer_index": site.transformer_index,
        "block": site.key[:2],
    }
    return q, k, v, extra


# --- the independent reference ------------------------------------------------------------------


def ref_attention(q, k, v, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, in float64."""
    q, k, v = (t.double() for t in (q, k, v))
    b, nq, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return (weights @ vh).transpose(1, 2).reshape(b, nq, inner)


def ref_kv(adapter, site: Site, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image K/V per reference ``[N, T, inner]`` from the file's weights for this site."""
    n = FILE_NUMBER[site.key]
    wk = adapter.weights.ip_adapter[f"{n}.to_k_ip.weight"].double()
    wv = adapter.weights.ip_adapter[f"{n}.to_v_ip.weight"].double()
    return tokens.double() @ wk.T, tokens.double() @ wv.T


def concat(t: torch.Tensor) -> torch.Tensor:
    """Several references' tokens side by side, as one token sequence."""
    return t.reshape(1, -1, t.shape[-1])


def ref_ip(adapter, site, q, cou, per_chunk, w, cond=COND, uncond=UNCOND, scaling="V only"):
    """w-scaled image attention for each batch row, its tokens chosen by its chunk (1 = uncond)."""
    rows = []
    for c in cou:
        k, v = ref_kv(adapter, site, uncond if c == 1 else cond)
        if scaling != "V only":
            ws = w * site.inner_dim / 1280 if "C penalty" in scaling else w
            if scaling.startswith("K+mean(V)"):
                mean = v.mean(dim=1, keepdim=True)  # per reference image, before concatenation
                k, v = k * ws, (v - mean) + mean * ws
            else:
                k, v = k * ws, v * ws
        rows += [(concat(k), concat(v))] * per_chunk
    k = torch.cat([r[0] for r in rows])
    v = torch.cat([r[1] for r in rows])
    out = ref_attention(q, k, v, site.heads)
    return out * w if scaling == "V only" else out


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=1e-5)


# --- the formula --------------------------------------------------------------------------------


@pytest.mark.parametrize("cou", [[0], [1, 0], [0, 1], [0, 1, 2]], ids=["cond", "uncond-cond", "cond-uncond", "3"])
@pytest.mark.parametrize("site", SITES, ids=lambda s: s.block_type)
def test_patch_equals_text_plus_weighted_image_attention(new_patch, adapter, site: Site, cou: list[int]) -> None:
    w = 0.7
    patch = new_patch(site.key).stacked(make_app(adapter, w))
    q, k, v, extra = block_inputs(site, cou)
    out = patch(q, k, v, extra)
    assert out.shape == q.shape and out.dtype == q.dtype
    # Chunk index 1 is the negative; every other index (0, and 2 in DualCFG's 3-chunk batch) the positive.
    expected = ref_attention(q, k, v, site.heads) + ref_ip(adapter, site, q, cou, 2, w)
    close(out, expected)


def test_cond_and_uncond_rows_really_differ(new_patch, adapter) -> None:
    """Guards the test above: cond and uncond tokens give distinguishable outputs."""
    q, k, v, extra = block_inputs(IN, [1, 0], per_chunk=1)
    q[1] = q[0]
    out = new_patch(IN.key).stacked(make_app(adapter, 1.0))(q, k, v, extra)
    base = sdpa_attention(q, k, v, IN.heads)
    assert not torch.allclose(out[0] - base[0], out[1] - base[1], atol=1e-3)


def test_several_references_are_concatenated_as_tokens(new_patch, adapter) -> None:
    w = 0.5
    q, k, v, extra = block_inputs(MID, [1, 0])
    out = new_patch(MID.key).stacked(make_app(adapter, w, cond=COND2, uncond=UNCOND2))(q, k, v, extra)
    expected = ref_attention(q, k, v, MID.heads) + ref_ip(adapter, MID, q, [1, 0], 2, w, cond=COND2, uncond=UNCOND2)
    close(out, expected)


# --- weight 0 and the sigma window --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_weight_zero_is_exactly_the_base_attention(new_patch, adapter, dtype) -> None:
    q, k, v, extra = (t.to(dtype) if isinstance(t, torch.Tensor) else t for t in block_inputs(OUT, [1, 0]))
    base = sdpa_attention(q, k, v, OUT.heads)
    for app in (
        make_app(adapter, 0.0),
        make_app(adapter, weights={IN.key: LayerWeight(0.8), MID.key: LayerWeight(0.8), OUT.key: LayerWeight(0.0)}),
    ):
        out = new_patch(OUT.key).stacked(app)(q, k, v, extra)
        assert out.dtype == dtype
        assert torch.equal(out, base)
    assert torch.equal(new_patch(OUT.key)(q, k, v, extra), base)


@pytest.mark.parametrize(
    ("sigma", "active"),
    [(11.0, False), (10.0, True), (5.0, True), (2.0, True), (1.9, False), (None, False)],
)
def test_sigma_window(new_patch, adapter, sigma, active: bool) -> None:
    patch = new_patch(IN.key).stacked(make_app(adapter, 0.7, sigma_start=10.0, sigma_end=2.0))
    q, k, v, extra = block_inputs(IN, [1, 0])
    if sigma is None:
        del extra["sigmas"]  # no sigma at all counts as "before the start"
    else:
        extra["sigmas"] = torch.tensor([sigma, 0.0, 0.0, 0.0])  # only the first sigma counts
    out = patch(q, k, v, extra)
    base = sdpa_attention(q, k, v, IN.heads)
    if active:
        close(out, ref_attention(q, k, v, IN.heads) + ref_ip(adapter, IN, q, [1, 0], 2, 0.7))
    else:
        assert torch.equal(out, base)


def test_default_window_is_always_on(new_patch, adapter) -> None:
    q, k, v, extra = block_inputs(IN, [0])
    del extra["sigmas"]
    out = new_patch(IN.key).stacked(make_app(adapter, 0.7))(q, k, v, extra)
    close(out, ref_attention(q, k, v, IN.heads) + ref_ip(adapter, IN, q, [0], 2, 0.7))


# --- embeds scaling -----------------------------------------------------------------------------

SCALINGS = ["V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty"]


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("site", [IN, MID], ids=["width64", "width128"])
def test_embeds_scaling(new_patch, adapter, site: Site, scaling: str) -> None:
    w = 1.6
    app = make_app(adapter, w, cond=COND2, uncond=UNCOND2, embeds_scaling=scaling)
    q, k, v, extra = block_inputs(site, [1, 0])
    out = new_patch(site.key).stacked(app)(q, k, v, extra)
    ip = ref_ip(adapter, site, q, [1, 0], 2, w, cond=COND2, uncond=UNCOND2, scaling=scaling)
    close(out, ref_attention(q, k, v, site.heads) + ip)


def test_scaling_modes_are_distinguishable(new_patch, adapter) -> None:
    """Guards the test above: each mode gives a different result at w != 1."""
    q, k, v, extra = block_inputs(MID, [0])
    outs = [
        new_patch(MID.key).stacked(make_app(adapter, 1.6, cond=COND2, uncond=UNCOND2, embeds_scaling=s))(
            q, k, v, extra
        )
        for s in SCALINGS
    ]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.allclose(outs[i], outs[j], atol=1e-4), (SCALINGS[i], SCALINGS[j])


@pytest.mark.parametrize("weight", [1.0, 0.0], ids=["acting", "weight 0 (no site gets K/V)"])
def test_unknown_scaling_is_an_error(adapter, weight) -> None:
    with pytest.raises(IPAdapterError, match="embeds_scaling"):
        make_app(adapter, weight, embeds_scaling="K only")


# --- masks --------------------------------------------------------------------------------------


def _half_mask(h: int, w: int) -> torch.Tensor:
    mask = torch.ones(1, h, w)
    mask[:, :, w // 2 :] = 0.5
    return mask


@pytest.mark.parametrize(("grid", "mask_size"), [((8, 8), (32, 32)), ((8, 12), (16, 24))], ids=["square", "wide"])
def test_mask_halves_one_half_of_the_token_grid(new_patch, adapter, grid, mask_size) -> None:
    w = 0.9
    patch = new_patch(IN.key).stacked(make_app(adapter, w, mask=_half_mask(*mask_size)))
    q, k, v, extra = block_inputs(IN, [1, 0], grid=grid)
    out = patch(q, k, v, extra)
    column = torch.arange(grid[0] * grid[1]) % grid[1]
    token_factor = torch.where(column < grid[1] // 2, 1.0, 0.5).double().reshape(1, -1, 1)
    ip = ref_ip(adapter, IN, q, [1, 0], 2, w)
    close(out, ref_attention(q, k, v, IN.heads) + ip * token_factor)  # cond and uncond rows alike


def test_one_mask_per_latent(new_patch, adapter) -> None:
    masks = torch.stack([torch.ones(16, 16), torch.full((16, 16), 0.25)])
    patch = new_patch(IN.key).stacked(make_app(adapter, 1.0, mask=masks))
    q, k, v, extra = block_inputs(IN, [1, 0], per_chunk=2)
    out = patch(q, k, v, extra)
    ip = ref_ip(adapter, IN, q, [1, 0], 2, 1.0)
    factor = torch.tensor([1.0, 0.25, 1.0, 0.25], dtype=torch.float64).reshape(4, 1, 1)  # latent i gets mask i
    close(out, ref_attention(q, k, v, IN.heads) + ip * factor)


# --- stacking, swaps, batches -------------------------------------------------------------------


def test_two_applications_add_up(new_patch, adapter) -> None:
    first = make_app(adapter, 0.6)
    second = make_app(adapter, 0.3, cond=COND2, uncond=UNCOND2)
    one = new_patch(MID.key).stacked(first)
    both = one.stacked(second)
    q, k, v, extra = block_inputs(MID, [1, 0])
    expected_one = ref_attention(q, k, v, MID.heads) + ref_ip(adapter, MID, q, [1, 0], 2, 0.6)
    expected_both = expected_one + ref_ip(adapter, MID, q, [1, 0], 2, 0.3, cond=COND2, uncond=UNCOND2)
    close(both(q, k, v, extra), expected_both)
    close(one(q, k, v, extra), expected_one)  # stacking made a new patch; the first is unchanged
    assert len(one.applications) == 1 and len(both.applications) == 2


def test_precise_swap_feeds_only_the_negative(new_patch, adapter) -> None:
    w = 0.8
    app = make_app(adapter, weights={s.key: LayerWeight(w, swap=True) for s in SITES})
    q, k, v, extra = block_inputs(IN, [1, 0])
    out = new_patch(IN.key).stacked(app)(q, k, v, extra)
    base = ref_attention(q, k, v, IN.heads)
    # Negative rows attend to the reference (cond) tokens; positive rows get zero K/V, so nothing.
    ip_neg = ref_ip(adapter, IN, q[:2], [0], 2, w)
    close(out[:2], base[:2] + ip_neg)
    close(out[2:], base[2:])


def test_alternate_tokens_at_marked_layers(new_patch, adapter) -> None:
    alt = _randn(1, TOKENS, CONTEXT, seed=13)
    weights = {s.key: LayerWeight(0.5, alt=s is MID) for s in SITES}
    app = make_app(adapter, weights=weights, alt_cond=alt)
    for site, cond in ((MID, alt), (IN, COND)):
        q, k, v, extra = block_inputs(site, [1, 0])
        out = new_patch(site.key).stacked(app)(q, k, v, extra)
        close(out, ref_attention(q, k, v, site.heads) + ref_ip(adapter, site, q, [1, 0], 2, 0.5, cond=cond))


def test_alternate_image_count_may_differ_from_the_references(new_patch, adapter) -> None:
    """Style & Composition with two style images and one composition image must still sample."""
    weights = {s.key: LayerWeight(0.5, alt=s is MID) for s in SITES}
    app = make_app(adapter, weights=weights, cond=COND2, uncond=UNCOND2, alt_cond=COND)
    q, k, v, extra = block_inputs(MID, [1, 0])
    out = new_patch(MID.key).stacked(app)(q, k, v, extra)
    assert torch.isfinite(out).all()
    # Positive rows see the composition image only.
    pos = slice(2, 4)  # chunk order [1, 0]: the positive latents are the last two rows
    expected = ref_attention(q[pos], k[pos], v[pos], MID.heads) + ref_ip(adapter, MID, q[pos], [0], 2, 0.5, cond=COND)
    close(out[pos], expected)


@pytest.mark.parametrize("per_chunk", [2, 3])
def test_unfold_gives_image_i_to_latent_i(new_patch, adapter, per_chunk: int) -> None:
    app = make_app(adapter, 1.0, cond=COND2, uncond=UNCOND.expand(2, -1, -1), unfold=True)
    q, k, v, extra = block_inputs(OUT, [0], per_chunk=per_chunk)
    out = new_patch(OUT.key).stacked(app)(q, k, v, extra)
    base = ref_attention(q, k, v, OUT.heads)
    for row in range(per_chunk):
        image = COND2[min(row, 1) : min(row, 1) + 1]  # more latents than images: the last one repeats
        ip = ref_ip(adapter, OUT, q[row : row + 1], [0], 1, 1.0, cond=image)
        close(out[row : row + 1], base[row : row + 1] + ip)


def test_half_precision_block(new_patch, adapter) -> None:
    q, k, v, extra = block_inputs(MID, [1, 0])
    patch = new_patch(MID.key).stacked(make_app(adapter, 0.7))
    out = patch(q.half(), k.half(), v.half(), extra)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), patch(q, k, v, extra), rtol=2e-2, atol=2e-2)


# --- copying ------------------------------------------------------------------------------------


def test_deepcopy_shares_the_patch_and_its_tensors(new_patch, adapter) -> None:
    app = make_app(adapter, 0.7)
    patch = new_patch(IN.key).stacked(app)
    assert copy.deepcopy(patch) is patch
    options = {"transformer_options": {"patches_replace": {"attn2": {IN.key: patch}}}}
    copied = copy.deepcopy(options)
    clone = copied["transformer_options"]["patches_replace"]["attn2"][IN.key]
    assert clone is patch
    assert copied["transformer_options"] is not options["transformer_options"]
    kv = clone.applications[0].sites[IN.key]
    assert kv.k_cond.data_ptr() == app.sites[IN.key].k_cond.data_ptr()
