"""The transformer adapters' block math (ipadapter_core.dit) against float64 references written here
from dit-adapters.md §2, and the block mapping / weight checks every apply runs first."""

from __future__ import annotations

import math

import pytest
import torch

from ipadapter_core.dit import attention as dit
from ipadapter_core.dit.application import DitApplication, TransformerLayout, entry_streams, targets
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.kinds.base import ModelKind

GEN = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


def softmax_attention64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B,H,L,D] x [B,H,N,D] -> [B,L,H*D], in float64 with the 1/sqrt(D) scale."""
    q, k, v = q.double(), k.double(), v.double()
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = p @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def rms64(x: torch.Tensor, eps: float, w: torch.Tensor | None = None) -> torch.Tensor:
    x = x.double()
    out = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return out * w.double() if w is not None else out


def test_prompt_attention_matches_float64_and_broadcasts_one_reference():
    q, k, v = rand(3, 2, 10, 16), rand(1, 2, 4, 16), rand(1, 2, 4, 16)
    got = dit.prompt_attention(q, k, v)
    ref = softmax_attention64(q, k.expand(3, -1, -1, -1), v.expand(3, -1, -1, -1))
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_prompt_attention_per_latent_rows_repeat_the_last_reference():
    q, k, v = rand(3, 2, 5, 8), rand(2, 2, 4, 8), rand(2, 2, 4, 8)
    got = dit.prompt_attention(q, k, v)
    ref = softmax_attention64(q, torch.cat([k, k[-1:]]), torch.cat([v, v[-1:]]))
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("v_norm", [False, True])
def test_instantx_keys_rms_normalise_each_head(v_norm):
    k, v = rand(1, 2, 4, 128) * 3, rand(1, 2, 4, 128) * 3
    nk, nv = dit.instantx_keys(k, v, v_norm)
    torch.testing.assert_close(nk.double(), rms64(k, 1e-5), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nv.double(), rms64(v, 1e-5) if v_norm else v.double(), atol=1e-5, rtol=1e-5)


def test_sd3_branch_matches_the_reference_math():
    """§2.3: AdaLN(tokens; temb) -> K/V -> norm_ip_k; adapter norms on the raw q/k; keys = image + prompt."""
    heads, d, hidden, ct, n, length = 2, 64, 128, 32, 6, 9
    tokens, temb = rand(1, n, hidden), rand(1, ct)
    lin_w, lin_b = rand(2 * hidden, ct) * 0.05, rand(2 * hidden) * 0.05
    wk, wv = rand(hidden, hidden) * 0.05, rand(hidden, hidden) * 0.05
    nq, nk, nipk = 1 + 0.1 * rand(d), 1 + 0.1 * rand(d), 1 + 0.1 * rand(d)
    q, k, v = rand(2, heads, length, d), rand(2, heads, length, d), rand(2, heads, length, d)

    ip_k, ip_v = dit.sd3_prompt_kv(tokens, temb, (lin_w, lin_b), wk, wv, nipk, heads)
    got = dit.sd3_prompt_attention(q, k, v, ip_k, ip_v, nq, nk)

    emb = torch.nn.functional.silu(temb.double()) @ lin_w.double().T + lin_b.double()
    shift, scale = emb[:, :hidden], emb[:, hidden:]
    t = tokens.double()
    t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-6)
    t = t * (1 + scale[:, None]) + shift[:, None]
    kp = (t @ wk.double().T).reshape(1, n, heads, d).transpose(1, 2)
    vp = (t @ wv.double().T).reshape(1, n, heads, d).transpose(1, 2)
    keys = torch.cat([rms64(k, 1e-6, nk), rms64(kp, 1e-6, nipk).expand(2, -1, -1, -1)], dim=2)
    values = torch.cat([v.double(), vp.expand(2, -1, -1, -1)], dim=2)
    ref = softmax_attention64(rms64(q, 1e-6, nq), keys, values)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-4)


def _kind(kind: str, blocks: int, family: str = "flux") -> ModelKind:
    return ModelKind(kind=kind, label=kind, family=family, context_dim=64, tokens=4, encoder_output="image_embeds",
                     encoder_width=8, build=lambda: None, arch="flux" if family == "flux" else "mmdit", hidden=32,
                     blocks=blocks)


FLUX = TransformerLayout("flux", hidden=32, heads=2, double=3, single=2)


def test_instantx_entries_cover_double_then_single_blocks():
    streams = entry_streams(_kind("instantx_flux", 5), FLUX)
    assert streams == [("double", 0), ("double", 1), ("double", 2), ("single", 0), ("single", 1)]


@pytest.mark.parametrize("kind,blocks", [("xlabs_flux", 19), ("instantx_flux", 57), ("xlabs_flux", 2)])
def test_a_block_count_mismatch_is_refused_with_both_counts(kind, blocks):
    with pytest.raises(IPAdapterError) as err:
        entry_streams(_kind(kind, blocks), FLUX)
    assert str(blocks) in str(err.value) and "double" in str(err.value) and err.value.input == "model"


def test_block_weights_name_entries_and_unnamed_blocks_get_zero():
    acting = targets(_kind("instantx_flux", 5), FLUX, 0.5, {0: 1.0, 4: 2.0})
    assert [(t.stream, t.index, t.entry, t.weight) for t in acting] == [("double", 0, 0, 0.5), ("single", 1, 4, 1.0)]
    assert len(targets(_kind("xlabs_flux", 3), FLUX, 0.7)) == 3
    assert targets(_kind("xlabs_flux", 3), FLUX, 0.0) == []


@pytest.mark.parametrize("bad", [{7: 1.0}, {0: float("nan")}])
def test_bad_block_weights_are_refused(bad):
    with pytest.raises(IPAdapterError):
        targets(_kind("xlabs_flux", 3), FLUX, 1.0, bad)


def test_token_mask_is_resized_to_the_token_grid():
    mask = torch.zeros(1, 32, 64)
    mask[:, :, 32:] = 1
    app = DitApplication(kind=_kind("xlabs_flux", 3), label="x", targets=(), state=torch.nn.Module(), mask=mask)
    m = app.token_mask((4, 8), torch.device("cpu"), torch.float32)
    assert m.shape == (1, 32, 1)
    grid = m.reshape(4, 8)
    assert torch.all(grid[:, :4] == 0) and torch.all(grid[:, 4:] == 1)
    assert app.active(0.5) and not DitApplication(kind=app.kind, label="x", targets=(), state=app.state,
                                                  sigma_start=0.4, sigma_end=0.1).active(0.5)
