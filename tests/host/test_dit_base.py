"""The DiT test models themselves (dit-adapters.md §6.2, P0): before any adapter parity can mean
anything, the reduced ComfyUI Flux / SD3 must equal their diffusers twins, sample through ComfyUI's
KSampler, and match what ComfyUI's own loader builds; the tiny SigLIP must encode like the real one.
"""

from __future__ import annotations

import pytest
import torch

from tests.host import harness

REL_TOL = 1e-4  # P0: max abs ≤ 1e-4 · max|ref|


@pytest.fixture(scope="module")
def dit(comfy):
    """``(dit_models, dit_twins)`` after ComfyUI is booted; models cached for the session."""
    from tests.fixtures import dit_models, dit_twins

    return dit_models, dit_twins


def _cached(key, make):
    if key not in harness.CACHE:
        harness.CACHE[key] = make()
    return harness.CACHE[key]


def _inputs(batch: int, tokens: int, pooled: int, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, 32, 32, generator=gen)
    return x, torch.randn(batch, tokens, 4096, generator=gen), torch.randn(batch, pooled, generator=gen)


def _assert_close(actual: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    err, scale = (actual - ref).abs().max().item(), ref.abs().max().item()
    assert torch.isfinite(actual).all() and scale > 0.1, f"{what}: degenerate reference (max {scale})"
    assert err <= REL_TOL * scale, f"{what}: max abs diff {err:.3g} > {REL_TOL} x {scale:.3g}"


def _assert_twin_round_trips(patcher, twin, twins) -> None:
    """ComfyUI's converter turns the twin back into exactly the ComfyUI weights (no key left over)."""
    ours = patcher.model.diffusion_model.state_dict()
    converted = twins.comfy_state_from_twin(twin)
    assert sorted(converted) == sorted(ours)
    different = [k for k in ours if not torch.equal(converted[k], ours[k])]
    assert not different, f"twin weights differ after ComfyUI's conversion: {different[:5]}"


def test_flux_matches_diffusers_twin(dit):
    models, twins = dit
    patcher = _cached(("dit", "flux", 0, True), lambda: models.build_flux(seed=0))
    twin = twins.flux_twin(patcher)
    _assert_twin_round_trips(patcher, twin, twins)

    x, context, y = _inputs(2, 12, models.FLUX_POOLED)
    sigma, g = torch.tensor([0.9, 0.35]), torch.tensor([3.5, 1.0])
    ref = twins.run_diffusers_flux(twin, x, sigma, context, y, g)
    _assert_close(models.run_comfy_raw(patcher, x, sigma, context, y, guidance=g), ref, "Flux diffusion_model")
    denoised = models.run_comfy(patcher, x, sigma, context, y, guidance=g)
    _assert_close(models.velocity(x, denoised, sigma), ref, "Flux apply_model")
    # The text path moves the output far beyond the tolerance, so parity is not carried by the image path
    # alone. (Swapping the prompts between batch items: reordering tokens would change nothing, since text
    # tokens carry no position in either model.)
    other = twins.run_diffusers_flux(twin, x, sigma, context.flip(0), y, g)
    assert (other - ref).abs().max() > 100 * REL_TOL * ref.abs().max()


def test_sd3_matches_diffusers_twin(dit):
    models, twins = dit
    patcher = _cached(("dit", "sd3", 0), lambda: models.build_sd3(seed=0))
    twin = twins.sd3_twin(patcher)
    _assert_twin_round_trips(patcher, twin, twins)

    x, context, y = _inputs(2, 12, models.SD3_POOLED)
    sigma = torch.tensor([0.9, 0.35])
    ref = twins.run_diffusers_sd3(twin, x, sigma, context, y)
    _assert_close(models.run_comfy_raw(patcher, x, sigma, context, y), ref, "SD3 diffusion_model")
    denoised = models.run_comfy(patcher, x, sigma, context, y)
    _assert_close(models.velocity(x, denoised, sigma), ref, "SD3 apply_model")
    other = twins.run_diffusers_sd3(twin, x, sigma, context.flip(0), y)
    assert (other - ref).abs().max() > 100 * REL_TOL * ref.abs().max()


@pytest.mark.parametrize("family", ["flux", "flux-schnell", "sd3"])
def test_ksampler_two_steps(dit, comfy, family):
    from comfy import model_base, model_sampling

    models, _ = dit
    if family == "sd3":
        patcher = _cached(("dit", "sd3", 0), lambda: models.build_sd3(seed=0))
        cond, model_class = models.sd3_conditioning, model_base.SD3
    else:
        guidance = family == "flux"
        patcher = _cached(("dit", "flux", 0, guidance), lambda: models.build_flux(seed=0, guidance=guidance))
        cond, model_class = models.flux_conditioning, model_base.Flux
    # ComfyUI's sampling for each config: Flux.1-dev's shifted schedule, Schnell's and SD3's discrete
    # flow with model time σ (Schnell) or 1000·σ (SD3).
    sampling = patcher.model.model_sampling
    assert type(patcher.model) is model_class
    if family == "flux":
        assert isinstance(sampling, model_sampling.ModelSamplingFlux)
    else:
        assert isinstance(sampling, model_sampling.ModelSamplingDiscreteFlow)
        assert (sampling.shift, sampling.multiplier) == ((3.0, 1000) if family == "sd3" else (1.0, 1.0))

    def sample(positive_seed: int) -> torch.Tensor:
        (latent,) = comfy.common_ksampler(patcher, 7, 2, 2.0, "euler", "simple", cond(1, 8, positive_seed),
                                          cond(1, 8, 99), models.empty_latent(16))
        return latent["samples"]

    first, again, other_prompt = sample(1), sample(1), sample(2)
    assert first.shape == (1, 16, 16, 16) and torch.isfinite(first).all()
    assert first.std() > 0.1
    assert torch.equal(first, again)
    assert (first - other_prompt).abs().max() > 1e-3


def test_builders_agree_with_comfy_detection(dit):
    """The configs ``build_*`` use are the ones ComfyUI's detection derives from those tensors, and a
    reduced SD3 file loads through UNETLoader's path into the very same model (Flux: only at full width)."""
    import comfy.model_detection
    import comfy.sd
    import comfy.supported_models

    models, _ = dit
    thin = models.thin_flux_state_dict(device="meta")
    assert comfy.model_detection.detect_unet_config(thin, "") == models.flux_unet_config(3072, 24, 1, 1)
    assert type(comfy.model_detection.model_config_from_unet(thin, "")) is comfy.supported_models.Flux

    patcher = _cached(("dit", "sd3", 0), lambda: models.build_sd3(seed=0))
    sd3_file = {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}
    assert comfy.model_detection.detect_unet_config(sd3_file, "") == models.sd3_unet_config(depth=2)
    loaded = comfy.sd.load_diffusion_model_state_dict(sd3_file)
    assert type(loaded.model.model_config) is comfy.supported_models.SD3
    x, context, y = _inputs(1, 8, models.SD3_POOLED)
    assert torch.equal(models.run_comfy(loaded, x, 0.6, context, y), models.run_comfy(patcher, x, 0.6, context, y))


def test_tiny_siglip_encodes_like_the_real_one(comfy, tmp_path):
    from tests.fixtures import dit_encoders

    encoder = dit_encoders.tiny_siglip_vision(tmp_path, seed=0)
    image = torch.rand(2, 80, 64, 3, generator=torch.Generator().manual_seed(5))
    out = encoder.encode_image(image, crop=False)
    tokens, width, layers = 16, 64, 3  # (56 / 14)^2 patches, no class token
    assert out["last_hidden_state"].shape == (2, tokens, width)
    assert torch.equal(out["image_embeds"], out["last_hidden_state"])  # SigLIP: no pooling, no projection
    assert out["all_hidden_states"].shape == (2, layers, tokens, width)
    assert torch.equal(out["penultimate_hidden_states"], out["all_hidden_states"][:, -2])
    assert not torch.allclose(out["penultimate_hidden_states"], out["last_hidden_state"], atol=1e-3)

    # The written file is HF SiglipVisionModel's layout with the pooling head: it loads strictly there
    # and the hidden states agree with ComfyUI's (eps set to ComfyUI's 1e-5).
    from safetensors.torch import load_file
    from transformers import SiglipVisionConfig, SiglipVisionModel

    path = dit_encoders.write_tiny_siglip_file(tmp_path / "tiny-siglip.safetensors", encoder, seed=0)
    tensors = load_file(path)
    head = dit_encoders.tiny_siglip_head_tensors(0)
    assert head and all(torch.equal(tensors[k], v) for k, v in head.items())
    hf = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=width, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=2, image_size=56,
        patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5)).eval()
    hf.load_state_dict({k.removeprefix("vision_model."): v for k, v in tensors.items()}, strict=True)
    clip_preprocess = harness.pack_module("nodes.host_compat").clip_preprocess()
    pixels = clip_preprocess(image, size=56, mean=[0.5] * 3, std=[0.5] * 3, crop=False)
    with torch.no_grad():
        hf_out = hf(pixel_values=pixels.float(), output_hidden_states=True)
    assert torch.allclose(hf_out.hidden_states[-2], out["penultimate_hidden_states"], atol=1e-5)
    assert torch.allclose(hf_out.last_hidden_state, out["last_hidden_state"], atol=1e-4)


def test_tiny_vit_l_gives_768_wide_image_embeds(comfy, tmp_path):
    from tests.fixtures import dit_encoders

    out = dit_encoders.tiny_vit_l(tmp_path, seed=0).encode_image(torch.rand(1, 224, 224, 3))
    assert out["image_embeds"].shape == (1, 768)
    assert out["penultimate_hidden_states"].shape == (1, 257, 64)
