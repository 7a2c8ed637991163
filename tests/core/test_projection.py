"""Projection models: output shapes for every published kind, and the math against a reference.

The reference below is written from the formulas in incumbent.md §2.2 straight on the state-dict
tensors, in float64, without using ``ipadapter_core.projection``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ipadapter_core.adapter import IPAdapterModel
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.loading import split_adapter_sections
from tests.fixtures.adapters import ADAPTER_LAYOUTS, AdapterLayout, adapter_state_dict

NAMES = list(ADAPTER_LAYOUTS)
CLIP_TOKENS = {224: 257, 336: 577}


def _model(name: str) -> IPAdapterModel:
    sd = adapter_state_dict(name, seed=1, dtype=torch.float32, sites=[64])
    return IPAdapterModel(split_adapter_sections(sd, name), name)


def _token_width(lay: AdapterLayout) -> int:
    return 4096 if lay.kind == "kolors_faceid_plus" else lay.context_dim


def _inputs(lay: AdapterLayout, n: int, gen: torch.Generator, tokens: int | None = None) -> tuple[torch.Tensor, ...]:
    """What the encoder side hands the projection for this kind (a batch of n references)."""
    face = F.normalize(torch.randn(n, 512, generator=gen), dim=-1)
    tokens = tokens or CLIP_TOKENS[336 if lay.family == "kolors" else 224]
    if lay.kind == "basic":
        return (torch.randn(n, lay.encoder_width, generator=gen),)
    if lay.kind in ("plus", "full_face", "kolors_plus"):
        return (torch.randn(n, tokens, lay.encoder_width, generator=gen),)
    if lay.kind in ("faceid", "faceid_portrait"):
        return (face,)
    if lay.kind == "faceid_portrait_unnorm":
        return (25.0 * face.unsqueeze(1),)  # raw InsightFace embedding: one token, norm ~25
    return face, torch.randn(n, tokens, lay.encoder_width, generator=gen)


# --- an independent reference -------------------------------------------------------------------


def _ln(x, p, prefix):
    return F.layer_norm(x, x.shape[-1:], p[f"{prefix}.weight"], p[f"{prefix}.bias"], eps=1e-5)


def _lin(x, p, prefix):
    bias = p.get(f"{prefix}.bias")
    return x @ p[f"{prefix}.weight"].T + (bias if bias is not None else 0)


def _perceiver(p, prefix, x, latents):
    """Each layer: latents += Attn(LN1 x, LN2 latents); latents += FF(latents)."""
    heads = p[f"{prefix}layers.0.0.to_q.weight"].shape[0] // 64
    i = 0
    while f"{prefix}layers.{i}.0.to_q.weight" in p:
        a = f"{prefix}layers.{i}.0"
        xn, ln = _ln(x, p, f"{a}.norm1"), _ln(latents, p, f"{a}.norm2")
        q = _lin(ln, p, f"{a}.to_q")
        k, v = _lin(torch.cat([xn, ln], dim=1), p, f"{a}.to_kv").chunk(2, dim=-1)
        b, nq, _ = q.shape
        q, k, v = (t.reshape(b, t.shape[1], heads, 64).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax((q * 64**-0.25) @ (k * 64**-0.25).transpose(-1, -2), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, nq, heads * 64)
        latents = _lin(out, p, f"{a}.to_out") + latents
        f = f"{prefix}layers.{i}.1"
        latents = _lin(F.gelu(_lin(_ln(latents, p, f"{f}.0"), p, f"{f}.1")), p, f"{f}.3") + latents
        i += 1
    return latents


def reference_projection(
    lay: AdapterLayout, p: dict, inputs, clip_weight: float = 1.0, shortcut: bool = False, dtype=torch.float64
):
    p = {k: v.to(dtype) for k, v in p.items()}
    inputs = tuple(t.to(dtype) for t in inputs)
    x = inputs[0]
    width = _token_width(lay)
    if lay.kind == "basic":
        return _ln(_lin(x, p, "proj").reshape(x.shape[0], -1, width), p, "norm")
    if lay.kind == "full_face":
        return _ln(_lin(F.gelu(_lin(x, p, "proj.0")), p, "proj.2"), p, "proj.3")
    if lay.kind in ("plus", "kolors_plus", "faceid_portrait_unnorm"):
        latents = p["latents"].repeat(x.shape[0], 1, 1)
        latents = _perceiver(p, "", _lin(x, p, "proj_in"), latents)
        return _ln(_lin(latents, p, "proj_out"), p, "norm_out")
    ids = _ln(_lin(F.gelu(_lin(x, p, "proj.0")), p, "proj.2").reshape(x.shape[0], -1, width), p, "norm")
    if lay.kind in ("faceid", "faceid_portrait"):
        return ids
    r = "perceiver_resampler."
    out = _perceiver(p, r, _lin(inputs[1], p, f"{r}proj_in"), ids)
    out = _ln(_lin(out, p, f"{r}proj_out"), p, f"{r}norm_out")
    return ids + clip_weight * out if shortcut else out


def _project(model: IPAdapterModel, inputs: tuple[torch.Tensor, ...], **kwargs) -> torch.Tensor:
    """FaceID-Plus kinds take the CLIP features as ``clip_embeds`` next to the face embedding."""
    if len(inputs) == 2:
        kwargs["clip_embeds"] = inputs[1]
    return model.project(inputs[0], **kwargs)


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_projection_shape_and_values(name: str) -> None:
    lay = ADAPTER_LAYOUTS[name]
    model = _model(name)
    # The 4096/2048-wide Kolors perceivers cost seconds per 577 tokens; fewer tokens test the same math.
    inputs = _inputs(lay, 2, torch.Generator().manual_seed(3), tokens=33 if lay.family == "kolors" else None)
    kwargs = {"clip_weight": 0.7, "shortcut": True} if len(inputs) == 2 else {}
    out = _project(model, inputs, **kwargs)
    tokens = inputs[0].shape[1] if lay.kind == "full_face" else lay.tokens
    assert out.shape == (2, tokens, _token_width(lay))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.std() > 0.1  # tokens are not trivial (LayerNorm outputs ~unit spread)
    assert not torch.allclose(out[0], out[1])  # two references give two different token sets
    # float64 reference where affordable; the largest projections (up to 800M parameters) use float32.
    large = sum(t.numel() for t in model.weights.image_proj.values()) > 100_000_000
    dtype, tol = (torch.float32, 1e-3) if large else (torch.float64, 1e-4)
    expected = reference_projection(lay, model.weights.image_proj, inputs, dtype=dtype, **kwargs)
    torch.testing.assert_close(out.to(dtype), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["ip-adapter-plus_sd15.safetensors", "ip-adapter_sdxl_vit-h.safetensors"])
def test_batch_rows_are_independent(name: str) -> None:
    lay = ADAPTER_LAYOUTS[name]
    model = _model(name)
    (x,) = _inputs(lay, 3, torch.Generator().manual_seed(4))
    torch.testing.assert_close(model.project(x[1:2]), model.project(x)[1:2], rtol=1e-5, atol=1e-5)


def test_full_face_is_token_wise() -> None:
    """Each CLIP token maps to its own output token: permuting inputs permutes outputs."""
    lay = ADAPTER_LAYOUTS["ip-adapter-full-face_sd15.safetensors"]
    model = _model(lay.name)
    (x,) = _inputs(lay, 1, torch.Generator().manual_seed(5))
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(model.project(x[:, perm]), model.project(x)[:, perm], rtol=1e-5, atol=1e-5)


def test_faceid_plus_v2_shortcut_is_linear_in_clip_weight() -> None:
    lay = ADAPTER_LAYOUTS["ip-adapter-faceid-plusv2_sd15.bin"]
    model = _model(lay.name)
    face, clip = _inputs(lay, 1, torch.Generator().manual_seed(7))
    at = {w: model.project(face, clip_embeds=clip, clip_weight=w, shortcut=True) for w in (0.0, 1.0, 2.5)}
    ids_only = reference_projection(ADAPTER_LAYOUTS["ip-adapter-faceid_sd15.bin"], model.weights.image_proj, (face,))
    torch.testing.assert_close(at[0.0].double(), ids_only, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(at[2.5] - at[0.0], 2.5 * (at[1.0] - at[0.0]), rtol=1e-4, atol=1e-4)
    # At weight 0 the CLIP features do not matter at all.
    other_clip = torch.randn_like(clip)
    torch.testing.assert_close(model.project(face, clip_embeds=other_clip, clip_weight=0.0, shortcut=True), at[0.0])


def test_faceid_plus_v1_ignores_clip_weight_and_uses_clip() -> None:
    lay = ADAPTER_LAYOUTS["ip-adapter-faceid-plus_sd15.bin"]
    model = _model(lay.name)
    face, clip = _inputs(lay, 1, torch.Generator().manual_seed(8))
    v1 = model.project(face, clip_embeds=clip, clip_weight=1.0, shortcut=False)
    torch.testing.assert_close(model.project(face, clip_embeds=clip, clip_weight=3.0, shortcut=False), v1)
    assert not torch.allclose(model.project(face, clip_embeds=torch.randn_like(clip), shortcut=False), v1)


def test_half_precision_inputs_are_accepted() -> None:
    lay = ADAPTER_LAYOUTS["ip-adapter_sd15.safetensors"]
    model = _model(lay.name)
    (x,) = _inputs(lay, 2, torch.Generator().manual_seed(9))
    out = model.project(x.half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model.project(x.half().float()))


def test_projection_is_built_per_use_and_shares_an_fp32_file_s_tensors() -> None:
    """Not kept between applications (issue 6 §2); for an fp32 file building it copies nothing."""
    model = _model("ip-adapter_sd15.safetensors")
    first, second = model.projection(), model.projection()
    assert first is not second
    assert not any(p.requires_grad for p in first.parameters())
    stored = {t.data_ptr() for t in model.weights.image_proj.values()}  # _model writes fp32 files
    assert {p.data_ptr() for p in first.parameters()} <= stored


def test_incomplete_projection_weights_are_a_clear_error() -> None:
    name = "ip-adapter-plus_sd15.safetensors"
    sd = adapter_state_dict(name, dtype=torch.float32, sites=[64])
    del sd["image_proj"]["norm_out.bias"]
    model = IPAdapterModel(split_adapter_sections(sd, name), name)
    assert model.kind.kind == "plus"
    with pytest.raises(IPAdapterError) as err:
        model.project(torch.zeros(1, 257, 1280))
    assert name in str(err.value)
