"""Host-tier rows of docs/errors.md: base models, chunk layouts, dtypes and devices, and node inputs
that ComfyUI's own validation lets through.

Each refusal must name the node, the input, what was expected and what to do (user-pains "exact
error messages"); each supported case must sample to finite latents that the adapter changed.
Models are the reduced test UNets (and a 200k-parameter Flux for the unsupported-family row).
"""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import comfy_models
from tests.fixtures.comfy_models import attn2_sites
from tests.host import adapters, harness, probe

ADV = dict(weight=1.0, weight_type="linear", combine_embeds="concat", start_at=0.0, end_at=1.0,
           embeds_scaling="V only")
TINY_FLUX = {"image_model": "flux", "in_channels": 16, "patch_size": 2, "out_channels": 16, "vec_in_dim": 32,
             "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
             "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True,
             "guidance_embed": False}


_error_type, _actionable = harness.error_type, harness.assert_actionable


def _adapter(unet, ipadapter_dir, name="sd15-reduced"):
    model = unet(name)
    return model, adapters.load(adapters.adapter_file(ipadapter_dir, name, model))


def _patcher(model_config, dtype=torch.float32, manual_cast=None, seed: int = 0):
    import comfy.model_management as mm
    import comfy.model_patcher

    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model({})
    comfy_models.seeded_init(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


# --- base models of other families -------------------------------------------------------------


def _flux():
    import comfy.supported_models

    key = ("unet", "tiny-flux")
    if key not in harness.CACHE:
        harness.CACHE[key] = _patcher(comfy.supported_models.Flux(dict(TINY_FLUX)))
    return harness.CACHE[key]


def _unet_without_cross_attention():
    """An SD1.5-config UNet with no transformer at all, like a model whose blocks are not attn2-based."""
    import comfy.supported_models

    key = ("unet", "no-attn2")
    if key not in harness.CACHE:
        config = {**comfy_models.UNET_CONFIGS["sd15-reduced"], "transformer_depth": [0, 0],
                  "transformer_depth_output": [0, 0, 0, 0], "transformer_depth_middle": 0, "model_channels": 32}
        harness.CACHE[key] = _patcher(comfy.supported_models.SD15(config))
    return harness.CACHE[key]


@pytest.mark.parametrize("make", [_flux, _unet_without_cross_attention], ids=["flux", "no-attn2"])
@pytest.mark.parametrize("node", ["IPAdapterAdvanced", "IPAdapterUnifiedLoader"])
def test_unsupported_family_says_which_families_are_supported(pack, unet, ipadapter_dir, clip_vision,
                                                              reference_image, make, node):
    _, ipa = _adapter(unet, ipadapter_dir)
    model = make()
    with pytest.raises(_error_type()) as err:
        if node == "IPAdapterAdvanced":
            harness.run_node(node, model=model, ipadapter=ipa, image=reference_image, clip_vision=clip_vision, **ADV)
        else:
            harness.run_node(node, model=model, preset="STANDARD (medium strength)")
    # A Flux model is named as such, with the presets that fit it; other models get the families that are supported.
    needles = ("SD1.5", "Flux", "FLUX XLABS") if make is _flux else ("input 'model'", "SD1.5", "SDXL")
    text = _actionable(err.value, *needles)
    assert text.startswith("[IPAdapter"), text
    assert "size mismatch" not in text and "has no attribute" not in text


# --- cond_or_uncond layouts through real sampling ------------------------------------------------


class _LayoutSpy:
    """Wraps a site's patch: records each call's chunk layout and checks every chunk's rows against the same
    patch called on those rows alone as a single chunk (0 = the reference tokens, 1 = the negative's).
    Chunk 2 (DualCFG's positive) must read the reference's tokens, whatever else is in the batch."""

    def __init__(self, inner, seen: set) -> None:
        self.inner, self.seen = inner, seen

    def __call__(self, q, k, v, extra):
        out = self.inner(q, k, v, extra)
        assert out.shape == q.shape and torch.isfinite(out).all()
        layout = tuple(extra["cond_or_uncond"])
        self.seen.add(layout)
        per = q.shape[0] // len(layout)
        for index, chunk in enumerate(layout):
            rows = slice(index * per, (index + 1) * per)
            alone = self.inner(q[rows], k[rows], v[rows], {**extra, "cond_or_uncond": [1 if chunk == 1 else 0]})
            torch.testing.assert_close(out[rows], alone, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, c=chunk: f"chunk {c} of {layout}: {m}")
        return out

    def __deepcopy__(self, memo):
        return self


def _spied(patched, model, seen: set):
    spied = patched.clone()
    for key, _ in attn2_sites(model):
        spied.set_model_attn2_replace(_LayoutSpy(probe.patch_at(patched, key), seen), *key)
    return spied


def _dual_cfg(model, cfg1: float, cfg2: float, seed: int = 7) -> torch.Tensor:
    import comfy.sample
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Guider_DualCFG

    latent = torch.zeros(1, 4, 8, 8)
    guider = Guider_DualCFG(model)
    guider.set_conds(harness.conditioning(768, 1, False), harness.conditioning(768, 2, False),
                     harness.conditioning(768, 3, False))
    guider.set_cfg(cfg1, cfg2)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 1)
    noise = comfy.sample.prepare_noise(latent, seed)
    with torch.inference_mode():
        return guider.sample(noise, latent, comfy.samplers.sampler_object("euler"), sigmas, disable_pbar=True,
                             seed=seed)


# The layouts this host batches them in (0.3.64): DualCFG's conds are [negative, middle, positive] = 0, 1, 2.
@pytest.mark.parametrize(
    ("run", "layout"),
    [("cfg1", (0,)), ("cfg", (1, 0)), ("dualcfg", (2, 1, 0)), ("dualcfg-cfg2-1", (2, 1))],
    ids=["cfg1-1", "cfg-2", "dualcfg-3", "dualcfg-cfg2-1-2"],  # named by chunk count (docs/errors.md cites them)
)
def test_chunk_layouts_from_real_guiders(pack, unet, ipadapter_dir, clip_vision, reference_image, run, layout):
    """Each guider's batch is served, and every chunk's rows read their own tokens (checked by ``_LayoutSpy``)."""
    model, ipa = _adapter(unet, ipadapter_dir)
    patched = adapters.apply(model, ipa, reference_image, clip_vision)
    seen: set = set()
    spied = _spied(patched, model, seen)
    if run.startswith("dualcfg"):
        cfg2 = 1.0 if run.endswith("1") else 3.0
        latent, plain = _dual_cfg(spied, 2.0, cfg2), _dual_cfg(model, 2.0, cfg2)
    else:
        cfg = 1.0 if run == "cfg1" else 4.0
        latent, plain = harness.sample(spied, steps=1, cfg=cfg), harness.sample(model, steps=1, cfg=cfg)
    assert seen and all(sorted(got) == sorted(layout) for got in seen), seen
    assert torch.isfinite(latent).all() and not torch.equal(latent, plain)


# --- dtypes and devices ------------------------------------------------------------------------


def _dtype_model(name: str, dtype, manual_cast):
    import comfy.supported_models

    key = ("unet", name, str(dtype))
    if key not in harness.CACHE:
        family = comfy_models.family_of(name)
        config_class = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[family]
        harness.CACHE[key] = _patcher(config_class(dict(comfy_models.UNET_CONFIGS[name])), dtype, manual_cast)
    return harness.CACHE[key]


@pytest.mark.parametrize(
    ("dtype", "manual_cast", "compute"),
    [(torch.float16, None, torch.float16), (torch.bfloat16, None, torch.bfloat16),
     (torch.float8_e4m3fn, torch.float32, torch.float32)],
    ids=["fp16", "bf16", "fp8-stored"],
)
def test_model_dtypes(pack, unet, ipadapter_dir, clip_vision, reference_image, dtype, manual_cast, compute):
    """The patch gets q in the model's compute dtype (fp8 storage computes in fp32) and returns that dtype."""
    name = "sdxl-reduced"
    _, ipa = _adapter(unet, ipadapter_dir, name)
    model = _dtype_model(name, dtype, manual_cast)
    assert next(model.model.diffusion_model.parameters()).dtype == dtype
    patched = adapters.apply(model, ipa, reference_image, clip_vision)
    dtypes: set = set()

    class Spy(_LayoutSpy):
        def __call__(self, q, k, v, extra):
            dtypes.add(q.dtype)
            out = self.inner(q, k, v, extra)
            assert out.dtype == q.dtype
            return out

    spied = patched.clone()
    for key, _ in attn2_sites(model):
        spied.set_model_attn2_replace(Spy(probe.patch_at(patched, key), set()), *key)
    latent = harness.sample(spied, steps=1)
    assert dtypes == {compute}
    assert torch.isfinite(latent).all() and not torch.equal(latent, harness.sample(model, steps=1))


def test_dtype_follows_the_model_after_host_moves(pack, unet, ipadapter_dir, clip_vision, reference_image):
    """Adapter K/V are built once in fp32; the host then moves patches with ``model_patches_to`` (device,
    then dtype) and calls them in whatever dtype the model computes in. On CPU-only CI the device side is
    covered in the core tier (tests/core/test_failure_modes.py, 'meta' as the other device): the host's
    attention backend cannot run on 'meta'."""
    model, ipa = _adapter(unet, ipadapter_dir)
    patched = adapters.apply(model, ipa, reference_image, clip_vision)
    inputs = probe.capture(model)
    for target in (torch.bfloat16, torch.device("cpu"), torch.float16):  # ComfyUI's own moves
        patched.model_patches_to(target)
    full = probe.contributions(patched, inputs)
    for key, site in inputs.items():
        patch = probe.patch_at(patched, key)
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            q, k, v = (t.to(dtype) for t in (site.q, site.k, site.v))
            with torch.inference_mode():
                out = patch(q, k, v, dict(site.extra))
            assert (out.dtype, out.shape) == (dtype, q.shape) and torch.isfinite(out).all()
            base = probe.base_attention(q, k, v, dict(site.extra))
            torch.testing.assert_close((out - base).float(), full[key], rtol=0.1, atol=0.05 * full[key].abs().max())


# --- node inputs ComfyUI's validation lets through ----------------------------------------------


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_by_the_node(pack, unet, ipadapter_dir, clip_vision, reference_image, weight):
    """ComfyUI's min/max check passes NaN (nan < min is False): the node must refuse it."""
    model, ipa = _adapter(unet, ipadapter_dir)
    with pytest.raises(_error_type()) as err:
        patched = harness.run_node("IPAdapterAdvanced", model=model, ipadapter=ipa, image=reference_image,
                                   clip_vision=clip_vision, **{**ADV, "weight": weight})[0]
        harness.sample(patched, steps=1)  # fails on NaN latents if nothing refused the weight
    _actionable(err.value, "[IPAdapter Advanced", "input 'weight'")


def test_weight_above_the_slider_range_is_applied_when_called_directly(pack, unet, ipadapter_dir, clip_vision,
                                                                       reference_image):
    """The graph validator caps weight at the declared max (5); a direct call with 8 is honoured, not clamped."""
    model, ipa = _adapter(unet, ipadapter_dir)
    spec = pack.NODE_CLASS_MAPPINGS["IPAdapterAdvanced"].INPUT_TYPES()["required"]["weight"][1]
    assert spec["min"] <= 0 < 1 < spec["max"] < 8
    inputs = probe.capture(model)
    one = probe.contributions(adapters.apply(model, ipa, reference_image, clip_vision, weight=1.0), inputs)
    eight = probe.contributions(adapters.apply(model, ipa, reference_image, clip_vision, weight=8.0), inputs)
    for key in inputs:
        torch.testing.assert_close(eight[key], 8.0 * one[key], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("where", ["image", "image_negative"])
def test_nan_pixels_are_refused(pack, unet, ipadapter_dir, clip_vision, reference_image, where):
    model, ipa = _adapter(unet, ipadapter_dir)
    bad = reference_image.clone()
    bad[0, 5, 5, 1] = float("nan")
    images = {"image": reference_image, where: bad}
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=model, ipadapter=ipa, clip_vision=clip_vision, **images, **ADV)
    _actionable(err.value, "[IPAdapter Advanced", f"input '{where}'", "NaN")


@pytest.mark.parametrize("where", ["pos_embed", "neg_embed"])
def test_nan_embeds_are_refused(pack, unet, ipadapter_dir, clip_vision, reference_image, where):
    model, ipa = _adapter(unet, ipadapter_dir)
    embeds = harness.run_node("IPAdapterEncoder", ipadapter=ipa, image=reference_image, weight=1.0,
                              clip_vision=clip_vision)[0]
    bad = embeds.clone()
    bad.view(-1)[3] = float("inf")
    given = {"pos_embed": embeds, "neg_embed": torch.zeros_like(embeds), where: bad}
    with pytest.raises(_error_type()) as err:
        patched = harness.run_node("IPAdapterEmbeds", model=model, ipadapter=ipa, weight=1.0, weight_type="linear",
                                   start_at=0.0, end_at=1.0, embeds_scaling="V only", **given)[0]
        harness.sample(patched, steps=1)  # fails on non-finite latents if nothing refused the embeds
    _actionable(err.value, "[IPAdapter Embeds", "NaN or infinite")


@pytest.mark.parametrize("size", [(3, 5), (100, 40)])
def test_mask_of_any_size_is_resized_to_the_latent(pack, unet, ipadapter_dir, clip_vision, reference_image, size):
    model, ipa = _adapter(unet, ipadapter_dir)
    mask = torch.zeros(1, *size)
    mask[:, :, : size[1] // 2] = 1.0
    patched = adapters.apply(model, ipa, reference_image, clip_vision, attn_mask=mask)
    inputs = probe.capture(model)
    masked = probe.contributions(patched, inputs)
    full = probe.contributions(adapters.apply(model, ipa, reference_image, clip_vision), inputs)
    for key in inputs:
        assert torch.isfinite(masked[key]).all()
        assert 0 < masked[key].abs().sum() < full[key].abs().sum()


def test_no_adapter_reaching_the_node(pack, unet, clip_vision, reference_image):
    """An API prompt that passes nothing as ipadapter (the incumbent's bare KeyError: 'ipadapter')."""
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=None, image=reference_image,
                         clip_vision=clip_vision, **ADV)
    _actionable(err.value, "[IPAdapter Advanced", "input 'ipadapter'", "loader")
