"""Core-level rows of docs/errors.md: each bad input is refused by the core with a message that names
the input or file, what was expected and what to do (the node name is added by ``nodes/base.py`` and
checked in the host tier). Rows already covered elsewhere are referenced from the table, not repeated.

Why at the core: every node variant (tiles, regional, batch, FaceID) reaches ``build_application``
and ``CrossAttentionPatch``; a check that only one node performs leaves the others to fail at sampling
time with a raw torch error, far from the input that caused it.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from ipadapter_core.adapter import IPAdapterModel, build_application
from ipadapter_core.attention import CrossAttentionPatch
from ipadapter_core.embeds import check_finite, combine
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.few_token_attention import worthwhile
from ipadapter_core.kinds import detect_kind
from ipadapter_core.loading import load_adapter_file, split_adapter_sections
from ipadapter_core.sites import Site
from ipadapter_core.weighting import LayerWeight, resolve
from tests.fixtures.adapters import adapter_state_dict

SITES = [Site(("input", 1, 0), 0, 64, 2), Site(("middle", 0, 0), 1, 128, 4), Site(("output", 1, 0), 2, 64, 2)]
IN = SITES[0]


@pytest.fixture(scope="module")
def adapter() -> IPAdapterModel:
    sd = adapter_state_dict("ip-adapter_sd15.safetensors", seed=3, dtype=torch.float32, sites=[64, 64, 128])
    return IPAdapterModel(split_adapter_sections(sd, "tiny.safetensors"), "tiny.safetensors")


def _tokens(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 768, generator=torch.Generator().manual_seed(seed))


def _app(adapter, weight: float = 1.0, **kw):
    return build_application(adapter, SITES, kw.pop("cond", _tokens()), kw.pop("uncond", _tokens(seed=1)),
                             {s.key: LayerWeight(weight) for s in SITES}, **kw)


def _call(app, site: Site = IN, cou=(1, 0), per_chunk: int = 1, dtype=torch.float32, device="cpu"):
    rows = len(cou) * per_chunk
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(rows, n, site.inner_dim, generator=gen) for n in (16, 77, 77))
    q, k, v = (t.to(device, dtype) for t in (q, k, v))
    extra = {"n_heads": site.heads, "cond_or_uncond": list(cou), "original_shape": [rows, 4, 8, 8],
             "activations_shape": [rows, site.inner_dim, 4, 4]}
    return CrossAttentionPatch(site.key).stacked(app)(q, k, v, extra), (q, k, v, extra)


def _actionable(exc: IPAdapterError, *needles: str) -> str:
    text = str(exc)
    assert exc.expected and exc.fix, text
    assert "Expected:" in text and "What to do:" in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


# --- files ----------------------------------------------------------------------------------------


def test_bin_with_plain_non_tensor_objects_is_refused(tmp_path):
    """Not an exploit, just a training script's pickled config object: refused all the same, by name."""
    path = tmp_path / "ip-adapter_sd15.bin"
    sd = adapter_state_dict("ip-adapter_sd15.safetensors", sites=[64])
    sd["training_args"] = argparse.Namespace(lr=1e-4)
    torch.save(sd, path)
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    _actionable(err.value, "ip-adapter_sd15.bin", "nothing in it was run", "weights-only")


NEAR_MISSES = {
    # A basic layout whose LayerNorm is 1024 wide although its K/V read a 768-wide context.
    "basic-norm-width": ({"proj.weight": torch.zeros(4 * 1024, 1024), "proj.bias": torch.zeros(4096),
                          "norm.weight": torch.ones(1024), "norm.bias": torch.zeros(1024)}, "basic", ("1024", "768")),
    # A Resampler (plus) whose output is 1280 wide for a 768 context.
    "plus-output-width": ({"latents": torch.zeros(1, 16, 768), "proj_in.weight": torch.zeros(768, 1280),
                           "proj_out.weight": torch.zeros(1280, 768), "layers.0.0.to_q.weight": torch.zeros(768, 768),
                           "norm_out.weight": torch.ones(1280)}, "plus", ("1280", "768")),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_unknown_layout_names_the_closest_kind_and_what_differed(case: str):
    image_proj, closest, numbers = NEAR_MISSES[case]
    ip_adapter = {f"{n}.to_{kv}_ip.weight": torch.zeros(320, 768) for n in (1, 3) for kv in "kv"}
    with pytest.raises(IPAdapterError) as err:
        detect_kind(image_proj, ip_adapter, name="mystery.safetensors")
    text = _actionable(err.value, "mystery.safetensors")
    assert "closest" in text.lower(), f"the closest kind is not named:\n{text}"
    assert closest in text.lower()
    for number in numbers:  # both sides of the mismatch
        assert number in text, f"{number} (what differed) not in:\n{text}"


def test_adapter_for_another_layer_layout(adapter):
    """An adapter with fewer K/V layers than the UNet has attn2 sites (another family or a cut file)."""
    sites = SITES + [Site(("output", 2, 0), 3, 64, 2)]
    with pytest.raises(IPAdapterError) as err:
        _app_with_sites(adapter, sites)
    _actionable(err.value, "tiny.safetensors", "3 cross-attention layers", "4")


def _app_with_sites(adapter, sites):
    return build_application(adapter, sites, _tokens(), _tokens(seed=1), {s.key: LayerWeight(1.0) for s in sites})


# --- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embeds_are_refused(bad: float):
    embeds = torch.randn(2, 1024)
    embeds[1, 5] = bad
    with pytest.raises(IPAdapterError) as err:
        check_finite(embeds, "reference embeds", "pos_embed")
    _actionable(err.value, "NaN or infinite", "input 'pos_embed'")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_before_sampling(adapter, bad: float):
    """A NaN weight passes ComfyUI's min/max validation (nan < min is False) and would give NaN latents."""
    with pytest.raises(IPAdapterError) as err:
        weights = resolve("linear", bad, SITES, "sd15")
        app = build_application(adapter, SITES, _tokens(), _tokens(seed=1), weights)
        out, _ = _call(app)
        assert torch.isfinite(out).all(), "NaN reached the attention output"
    _actionable(err.value, "input 'weight'")


@pytest.mark.parametrize("weight", [-1.0, 5.0, 50.0])
def test_finite_weights_outside_the_ui_range_are_computed(adapter, weight: float):
    """Out of the sliders' range but finite: the maths is defined, so direct callers get what they asked for."""
    base, (q, k, v, extra) = _call(_app(adapter, 0.0))
    out, _ = _call(_app(adapter, weight))
    one, _ = _call(_app(adapter, 1.0))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out - base, weight * (one - base), rtol=1e-4, atol=1e-4 * max(1.0, abs(weight)))


@pytest.mark.parametrize("method", ["concat", "average", "max", "min", "norm average"])
def test_empty_embeds_batch_is_refused(adapter, method: str):
    """Zero reference images (an empty batch from a filter node) must not reach the attention."""
    with pytest.raises(IPAdapterError) as err:
        cond = combine(torch.zeros(0, 1024), method)
        app = build_application(adapter, SITES, adapter.project(cond), _tokens(seed=1)[:0],
                                {s.key: LayerWeight(1.0) for s in SITES})
        out, _ = _call(app)
        assert torch.isfinite(out).all(), "an empty batch gave NaN"
    _actionable(err.value, "empty")


@pytest.mark.parametrize(
    "shape", [(8, 8), (1, 1, 8, 8), (8,), (1, 0, 8), (0, 8, 8)], ids=["2d", "4d", "1d", "zero-height", "zero-masks"]
)
def test_mask_of_the_wrong_rank_or_empty_is_refused_when_built(adapter, shape):
    """Refused when the application is built, not with an interpolate error in the middle of sampling.

    A 2-D [H, W] mask may also be accepted as one mask; then it must work.
    """
    try:
        app = _app(adapter, mask=torch.ones(shape))
    except IPAdapterError as exc:
        _actionable(exc, "input 'attn_mask'", "mask")
        return
    assert len(shape) == 2 and 0 not in shape, f"a {shape} mask was accepted without complaint"
    out, _ = _call(app)
    assert torch.isfinite(out).all()


def test_non_finite_mask_is_refused(adapter):
    mask = torch.ones(1, 8, 8)
    mask[0, 2, 2] = float("nan")
    with pytest.raises(IPAdapterError) as err:
        out, _ = _call(_app(adapter, mask=mask))
        assert torch.isfinite(out).all(), "a NaN mask pixel reached the output"
    _actionable(err.value, "input 'attn_mask'")


@pytest.mark.parametrize("size", [(3, 5), (64, 16), (9, 9)])
def test_mask_of_another_size_than_the_latent_is_resized(adapter, size):
    """Mask sizes need not match the latent (cubiq#3 'tensor a (6144) must match ...'): resized per site."""
    mask = torch.zeros(1, *size)
    mask[:, :, : size[1] // 2] = 1.0
    base, _ = _call(_app(adapter, 0.0), per_chunk=2)
    out, _ = _call(_app(adapter, 1.0, mask=mask), per_chunk=2)
    full, _ = _call(_app(adapter, 1.0), per_chunk=2)
    assert out.shape == full.shape and torch.isfinite(out).all()
    added, unmasked = (out - base).abs().sum(), (full - base).abs().sum()
    assert 0 < added < unmasked, "the mask should keep part, not all or nothing, of the contribution"


# --- chunk layouts, dtypes and devices ------------------------------------------------------------


def _ref_rows(adapter, q, k, v, cou, per_chunk: int, w: float, tokens_for) -> torch.Tensor:
    """Float64 reference at ``IN``: text attention plus ``w`` x image attention, each chunk's rows reading the
    tokens ``tokens_for(chunk)`` picks. Written from the formula; shares no code with the patch."""
    def attend(q, k, v):
        b, n, inner = q.shape
        d = inner // IN.heads
        qh, kh, vh = (t.double().reshape(t.shape[0], t.shape[1], IN.heads, d).transpose(1, 2) for t in (q, k, v))
        probs = torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, dim=-1)
        return (probs @ vh).transpose(1, 2).reshape(b, n, inner)

    wk = adapter.weights.ip_adapter["1.to_k_ip.weight"].double()  # IN is the file's layer 1 (first down block)
    wv = adapter.weights.ip_adapter["1.to_v_ip.weight"].double()
    keys, values = [], []
    for chunk in cou:
        tokens = tokens_for(chunk).double()
        keys += [tokens @ wk.T] * per_chunk
        values += [tokens @ wv.T] * per_chunk
    return attend(q, k, v) + w * attend(q, torch.cat(keys), torch.cat(values))


LAYOUTS = {"cfg1": (0,), "cfg": (1, 0), "dualcfg-cfg2-1": (1, 2), "index2-alone": (2,), "dualcfg-3": (1, 0, 2),
           "dualcfg-nested": (0, 1, 2)}


@pytest.mark.parametrize("few_tokens", [False, True], ids=["library", "few-token"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_row_of_every_chunk_layout_reads_its_own_tokens(adapter, name: str, few_tokens: bool):
    """Chunk 1 (the negative) reads the uncond tokens, chunks 0 and 2 the reference's, row by row, against a
    float64 reference (1, 2 and 3 chunks; DualCFG with cfg2 = 1 is [1, 2], an IndexError in the incumbent)."""
    cou, per, w = LAYOUTS[name], 2, 0.8
    cond, uncond = _tokens(), _tokens(seed=1)
    app = _app(adapter, w, cond=cond, uncond=uncond)
    rows = len(cou) * per
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(rows, n, IN.inner_dim, generator=gen) for n in (16, 77, 77))
    extra = {"n_heads": IN.heads, "cond_or_uncond": list(cou), "original_shape": [rows, 4, 8, 8],
             "activations_shape": [rows, IN.inner_dim, 4, 4]}
    policy = (lambda q, extra, heads, tokens: worthwhile(q, heads, tokens)) if few_tokens else None
    out = CrossAttentionPatch(IN.key, few_tokens=policy).stacked(app)(q, k, v, extra)
    expected = _ref_rows(adapter, q, k, v, cou, per, w, lambda c: uncond if c == 1 else cond)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    # Guard: each chunk's rows are far from what the other side's tokens give, so misrouting one chunk fails above.
    for index, chunk in enumerate(cou):
        part = slice(index * per, (index + 1) * per)
        other = _ref_rows(adapter, q[part], k[part], v[part], (chunk,), per, w, lambda c: cond if c == 1 else uncond)
        assert (out[part].double() - other).abs().max() > 1e-3, f"chunk {chunk}: cond and uncond tokens agree"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_blocks_get_their_own_dtype_back(adapter, dtype):
    out, _ = _call(_app(adapter, 0.7), dtype=dtype)
    ref, _ = _call(_app(adapter, 0.7))
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


def test_image_keys_follow_the_device_of_the_block(adapter):
    """Built on CPU, called with q on another device ('meta' stands in for a GPU on CPU-only CI):
    the image K/V move to q's device instead of raising 'Expected all tensors to be on the same device'."""
    app = _app(adapter, 0.7)
    out, (q, *_rest) = _call(app, device="meta")
    assert out.device == q.device and out.shape == q.shape
    again, _ = _call(app)  # the CPU layout is still served afterwards
    assert again.device.type == "cpu" and torch.isfinite(again).all()
