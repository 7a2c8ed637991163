"""few_token_attention: its two strided products are multi-head attention, and the patch uses them
exactly where its policy says (the patch-level formulas run on both paths in test_attention.py)."""

from __future__ import annotations

import pytest
import torch

from ipadapter_core import few_token_attention as fta
from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from ipadapter_core.weighting import LayerWeight
from tests.core.test_attention import (
    COND2,
    IN,
    MID,
    SITES,
    UNCOND2,
    _half_mask,
    adapter,  # noqa: F401  (the shared fixture)
    block_inputs,
    make_app,
    ref_attention,
)


def _randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("heads, tokens, dim", [(1, 1, 8), (2, 4, 8), (8, 4, 40), (8, 6, 16), (3, 16, 5)])
@pytest.mark.parametrize("batch", [1, 3])
def test_products_equal_multi_head_attention(heads, tokens, dim, batch):
    inner, n = heads * dim, 37
    q = _randn(batch, n, inner, seed=1)
    k, v = _randn(batch, tokens, inner, seed=2), _randn(batch, tokens, inner, seed=3)
    base = _randn(batch, n, inner, seed=4)
    out = base.clone()
    fta.add_attention_(out, q, *fta.split_heads(k, v, heads), alpha=0.6)
    expected = base.double() + 0.6 * ref_attention(q, k, v, heads)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_row_factor_scales_each_query_row():
    heads, tokens, inner, n = 2, 4, 16, 10
    q, k, v = _randn(2, n, inner, seed=5), _randn(2, tokens, inner, seed=6), _randn(2, tokens, inner, seed=7)
    factor = torch.rand(2, 1, n, generator=torch.Generator().manual_seed(8))
    out = torch.zeros(2, n, inner)
    fta.add_attention_(out, q, *fta.split_heads(k, v, heads), alpha=2.0, row_factor=factor)
    expected = 2.0 * ref_attention(q, k, v, heads) * factor.transpose(1, 2).double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 5), (2, 5)], ids=lambda s: f"{s[0]}x1x{s[1]}")
def test_row_factor_shapes_broadcast(shape):
    """A gate [1, 1, 1], per-image weights [B, 1, 1], one mask [1, 1, N], per-latent masks [B, 1, N]."""
    heads, tokens, inner, n, b = 2, 3, 8, 5, 2
    q, k, v = _randn(b, n, inner, seed=10), _randn(b, tokens, inner, seed=11), _randn(b, tokens, inner, seed=12)
    factor = torch.rand(shape[0], 1, shape[1], generator=torch.Generator().manual_seed(13))
    out = torch.zeros(b, n, inner)
    fta.add_attention_(out, q, *fta.split_heads(k, v, heads), row_factor=factor)
    expected = ref_attention(q, k, v, heads) * factor.transpose(1, 2).double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_split_heads_layout():
    """Head h's keys are columns h*d..h*d+d-1 of every token, scaled by 1/sqrt(d) for K only."""
    heads, tokens, d = 3, 2, 4
    k = _randn(2, tokens, heads * d, seed=9)
    kh, vh = fta.split_heads(k, k, heads)
    assert kh.shape == vh.shape == (2, heads, tokens, d) and kh.is_contiguous() and vh.is_contiguous()
    for h in range(heads):
        assert torch.equal(vh[:, h], k[:, :, h * d:(h + 1) * d])
        torch.testing.assert_close(kh[:, h], k[:, :, h * d:(h + 1) * d] * d**-0.5)


def test_out_is_written_in_place_without_copying_q():
    heads, tokens, inner, n = 4, 4, 32, 9
    q, k, v = _randn(2, n, inner, seed=14), _randn(2, tokens, inner, seed=15), _randn(2, tokens, inner, seed=16)
    out = torch.zeros(2, n, inner)
    pointer = out.data_ptr()
    assert fta.add_attention_(out, q, *fta.split_heads(k, v, heads)) is out and out.data_ptr() == pointer
    assert out.abs().sum() > 0


def test_worthwhile_only_for_few_rows_in_fp32_on_the_cpu():
    q = torch.zeros(2, 8, 320)
    assert fta.worthwhile(q, 8, 4)  # SD1.5, a basic or FaceID adapter
    assert fta.worthwhile(q, 20, 16)  # SDXL's 1280-wide blocks, a plus adapter
    assert not fta.worthwhile(q, 8, 17)
    assert not fta.worthwhile(q, 8, 257)  # full face: the library kernel is faster
    assert not fta.worthwhile(q, 8, 0)
    assert not fta.worthwhile(q.half(), 8, 4)
    assert not fta.worthwhile(q.to("meta"), 8, 4)


def test_patch_takes_the_products_where_the_policy_says(adapter, monkeypatch):  # noqa: F811
    calls: list[tuple[int, int]] = []
    real = fta.probabilities

    def counting(q, kh, segments):
        calls.append(tuple(kh.shape[1:3]))
        return real(q, kh, segments)

    monkeypatch.setattr(fta, "probabilities", counting)
    q, k, v, extra = block_inputs(MID, [1, 0])
    app = make_app(adapter, 0.7)
    policy_seen: list[tuple[int, int]] = []

    def policy(q, extra, heads, tokens):
        policy_seen.append((heads, tokens))
        return True

    few = CrossAttentionPatch(MID.key, few_tokens=policy).stacked(app)(q, k, v, dict(extra))
    assert policy_seen == [(MID.heads, 4)] and calls == [(MID.heads, 4)]
    library = CrossAttentionPatch(MID.key, few_tokens=lambda *a: False).stacked(app)(q, k, v, dict(extra))
    assert len(calls) == 1  # the policy said no: the attention function ran instead
    torch.testing.assert_close(few, library, rtol=1e-5, atol=1e-5)


def test_a_foreign_result_is_never_written_into(adapter):  # noqa: F811
    """Another pack's replacement may keep its output: the products add into our own copy."""
    q, k, v, extra = block_inputs(IN, [1, 0])
    held: list[torch.Tensor] = []

    def foreign(q, k, v, extra):
        held.append(sdpa_attention(q, k, v, extra["n_heads"]))
        return held[-1]

    patch = CrossAttentionPatch(IN.key, inner=foreign, few_tokens=lambda *a: True).stacked(make_app(adapter, 0.9))
    out = patch(q, k, v, extra)
    assert torch.equal(held[0], sdpa_attention(q, k, v, IN.heads))
    assert not torch.equal(out, held[0])


def test_stacked_segments_equal_separate_adapters():
    """One pass over q for several adapters: each segment softmaxed and scaled on its own."""
    heads, inner, n, b = 4, 32, 11, 2
    q = _randn(b, n, inner, seed=20)
    adapters = [(_randn(b, t, inner, seed=21 + t), _randn(b, t, inner, seed=31 + t)) for t in (4, 16, 6)]
    factors = [0.7, torch.rand(b, 1, n, generator=torch.Generator().manual_seed(40)), None]
    base = _randn(b, n, inner, seed=41)
    separate = base.clone()
    for (k, v), f in zip(adapters, factors, strict=True):
        if isinstance(f, float):
            fta.add_attention_(separate, q, *fta.split_heads(k, v, heads), alpha=f)
        else:
            fta.add_attention_(separate, q, *fta.split_heads(k, v, heads), row_factor=f)
    split = [fta.split_heads(k, v, heads) for k, v in adapters]
    kh, vh = torch.cat([s[0] for s in split], dim=2), torch.cat([s[1] for s in split], dim=2)
    segments = [(k.shape[1], f) for (k, _), f in zip(adapters, factors, strict=True)]
    stacked = fta.add_values_(base.clone(), fta.probabilities(q, kh, segments), vh)
    torch.testing.assert_close(stacked, separate, rtol=1e-5, atol=1e-5)


def test_stacked_patch_makes_one_pass_and_matches_the_library_path(adapter, monkeypatch):  # noqa: F811
    q, k, v, extra = block_inputs(IN, [1, 0])
    apps = [
        make_app(adapter, 0.6),
        make_app(adapter, 1.2, cond=COND2, uncond=UNCOND2, mask=_half_mask(16, 16)),
        make_app(adapter, weights={s.key: LayerWeight(0.9) for s in SITES}, sigma_start=10.0, sigma_end=2.0),
    ]
    few_patch = CrossAttentionPatch(IN.key, few_tokens=lambda *a: True)
    library_patch = CrossAttentionPatch(IN.key)
    for app in apps:
        few_patch, library_patch = few_patch.stacked(app), library_patch.stacked(app)
    passes: list[int] = []
    real = fta.probabilities

    def counted(q, kh, segments):
        passes.append(len(segments))
        return real(q, kh, segments)

    monkeypatch.setattr(fta, "probabilities", counted)
    first = few_patch(q, k, v, dict(extra))
    assert passes == [3], "three stacked few-token adapters should share one pass"
    torch.testing.assert_close(first, library_patch(q, k, v, dict(extra)), rtol=1e-5, atol=1e-5)
    assert torch.equal(few_patch(q, k, v, dict(extra)), first), "the cached concatenation changed the result"
    extra["sigmas"] = torch.full((4,), 1.0)  # the third adapter's window is closed: two segments
    torch.testing.assert_close(few_patch(q, k, v, dict(extra)), library_patch(q, k, v, dict(extra)),
                               rtol=1e-5, atol=1e-5)
    assert passes[-1] == 2
