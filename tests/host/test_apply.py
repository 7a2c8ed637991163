"""IPAdapterAdvanced on SD1.5- and SDXL-shaped UNets, sampled in-process by ComfyUI (CPU)."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.comfy_models import attn2_sites
from tests.host import adapters, harness, probe

MODELS = ["sd15-reduced", "sdxl-reduced"]

@pytest.fixture(params=MODELS)
def case(request, unet, ipadapter_dir, clip_vision, reference_image):
    """One test UNet with two different adapters and the unpatched model's latent."""
    name = request.param
    model = unet(name)
    first = adapters.load(adapters.adapter_file(ipadapter_dir, name, model, seed=0))
    second = adapters.load(adapters.adapter_file(ipadapter_dir, name, model, seed=1))
    if ("latent", name) not in harness.CACHE:
        harness.CACHE[("latent", name)] = harness.sample(model)
    return dict(name=name, model=model, first=first, second=second, clip_vision=clip_vision,
                image=reference_image, base_latent=harness.CACHE[("latent", name)])


def _apply(case, weight=1.0, model=None, adapter="first", image=None, **options):
    return adapters.apply(model or case["model"], case[adapter], case["image"] if image is None else image,
                          case["clip_vision"], weight=weight, **options)


def test_weight_zero_gives_the_unpatched_latent_bit_for_bit(case):
    latent = harness.sample(_apply(case, weight=0.0))
    assert torch.equal(latent, case["base_latent"])


def test_positive_weight_changes_the_latent(case):
    latent = harness.sample(_apply(case, weight=1.0))
    diff = (latent - case["base_latent"]).abs().max().item()
    assert diff > 1e-3 * case["base_latent"].abs().max().item(), f"the adapter had no visible effect ({diff})"


def test_input_model_is_left_unchanged(case):
    model = case["model"]
    before = probe.options_snapshot(model.model_options)
    patched = _apply(case, weight=1.0)
    assert patched is not model
    assert probe.options_snapshot(model.model_options) == before
    assert not model.model_options["transformer_options"].get("patches_replace", {}).get("attn2")
    assert torch.equal(harness.sample(model), case["base_latent"]), "sampling the input model changed"


def test_same_graph_twice_gives_identical_latents(case):
    first = harness.sample(_apply(case, weight=0.8))
    again = harness.sample(_apply(case, weight=0.8))
    assert torch.equal(first, again)


def test_two_stacked_adapters_both_act(case):
    image_b = torch.flip(case["image"], dims=[1])
    only_a = _apply(case)
    only_b = _apply(case, adapter="second", image=image_b)
    both = _apply(case, model=only_a, adapter="second", image=image_b)
    lat_a, lat_b, lat_ab = (harness.sample(m) for m in (only_a, only_b, both))
    assert not torch.equal(lat_ab, lat_a), "the second adapter did nothing on top of the first"
    assert not torch.equal(lat_ab, lat_b), "the first adapter was dropped when the second was stacked"
    # Per site, the stack adds exactly what each adapter adds alone.
    inputs = probe.capture(case["model"])
    ca, cb, cab = (probe.contributions(m, inputs) for m in (only_a, only_b, both))
    for key in inputs:
        torch.testing.assert_close(cab[key], ca[key] + cb[key], rtol=1e-4, atol=1e-5 * (cab[key].abs().max() + 1e-12))


def test_every_site_is_patched_including_the_middle_block(case):
    model = case["model"]
    keys = [key for key, _ in attn2_sites(model)]
    assert any(key[0] == "middle" for key in keys), "test UNet has no middle-block transformer"
    patched = _apply(case, weight=1.0)
    missing = [key for key in keys if probe.patch_at(patched, key) is None]
    assert not missing, f"no attn2 patch at {missing}"
    inputs = probe.capture(model)
    contrib = probe.contributions(patched, inputs)
    silent = [key for key in keys if contrib[key].abs().max() == 0]
    assert not silent, f"the patch adds nothing at {silent}"


def test_the_patch_runs_on_every_site_during_sampling(case):
    """Record which sites the host actually calls our replacement at while sampling."""
    model = case["model"]
    patched = _apply(case, weight=1.0)
    seen: list[tuple] = []
    spied = patched.clone()
    for key, _ in attn2_sites(model):
        inner = probe.patch_at(patched, key)
        spied.set_model_attn2_replace(_Spy(inner, seen), *key)
    harness.sample(spied, steps=1)
    expected = {key for key, _ in attn2_sites(model)}
    ran = {(block[0], block[1], index) for block, index in seen}
    assert ran == expected
    assert ("middle", 0) in {block for block, _ in seen}


class _Spy:
    def __init__(self, inner, seen: list) -> None:
        self.inner, self.seen = inner, seen

    def __call__(self, q, k, v, extra):
        self.seen.append((tuple(extra["block"]), extra["block_index"]))
        return self.inner(q, k, v, extra)

    def __deepcopy__(self, memo):
        return self
