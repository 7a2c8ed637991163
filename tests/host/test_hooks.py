"""ComfyUI's hooks (Create Hook LoRA, Create Hook Keyframe, Cond Set Props ...) together with our adapters.

A hook on one conditioning changes how the host samples: cond and uncond no longer share a batch (each
hook group is its own call, so the patch sees ``cond_or_uncond`` of one chunk at a time), and the UNet's
weights are patched per hook group and re-patched at every keyframe. The adapter must keep acting on
both halves, cache nothing derived from those weights, keep a graph deterministic and leave the input
model as it was.
"""

from __future__ import annotations

import pytest
import torch

from tests.host import adapters, harness, probe
from tests.host import variant_fixtures as vf

NAME = "sd15-reduced"


def _weight_hook(model, seed: int = 3):
    """A LoRA hook (as 'Create Hook LoRA' makes it) on every attn2.to_q of the UNet, in ComfyUI's key format."""
    import comfy.hooks

    gen = torch.Generator().manual_seed(seed)
    lora: dict[str, torch.Tensor] = {}
    for name, module in model.model.diffusion_model.named_modules():
        if name.endswith("attn2.to_q"):
            key = "lora_unet_" + name.replace(".", "_")
            out_features, in_features = module.weight.shape
            lora[f"{key}.lora_up.weight"] = torch.randn(out_features, 4, generator=gen) * 0.5
            lora[f"{key}.lora_down.weight"] = torch.randn(4, in_features, generator=gen) * 0.5
    assert lora, "the test UNet has no attn2 site"
    return comfy.hooks.create_hook_lora(lora, strength_model=1.0, strength_clip=0.0)


def _with_keyframes(hooks, *frames: tuple[float, float]):
    """The hooks with strength keyframes ``(strength, start_percent)``, as 'Set Hook Keyframes' does."""
    import comfy.hooks

    group = comfy.hooks.HookKeyframeGroup()
    for strength, start in frames:
        group.add(comfy.hooks.HookKeyframe(strength=strength, start_percent=start))
    hooks = hooks.clone()
    hooks.set_keyframes_on_hooks(hook_kf=group)
    return hooks


@pytest.fixture
def setup(unet, ipadapter_dir, clip_vision, reference_image):
    model = unet(NAME)
    ipa = adapters.load(adapters.adapter_file(ipadapter_dir, NAME, model))
    patched = adapters.apply(model, ipa, reference_image, clip_vision, weight=1.0)
    return model, patched


@pytest.fixture
def chunks_seen(monkeypatch):
    """Every ``cond_or_uncond`` our attn2 patches are called with."""
    patch_class = harness.pack_module("ipadapter_core.attention").CrossAttentionPatch
    original = patch_class.__call__
    seen: list[tuple] = []

    def recording(self, q, k, v, extra):
        seen.append(tuple(extra.get("cond_or_uncond") or ()))
        return original(self, q, k, v, extra)

    monkeypatch.setattr(patch_class, "__call__", recording)
    return seen


def test_adapter_acts_on_both_halves_when_a_weight_hook_splits_the_batch(setup, chunks_seen):
    model, patched = setup
    hooks = _weight_hook(model)
    hooked = harness.sample(patched, positive_hooks=hooks)
    # The hook split cond and uncond into separate calls, and our patch ran on each.
    assert (0,) in chunks_seen and (1,) in chunks_seen, f"patch saw only {sorted(set(chunks_seen))}"
    assert vf.changed(hooked, harness.sample(model, positive_hooks=hooks)), "the adapter had no effect under hooks"
    assert vf.changed(hooked, harness.sample(patched)), "the hook had no effect (test would prove nothing)"
    assert torch.equal(hooked, harness.sample(patched, positive_hooks=hooks)), "not deterministic under hooks"


def test_hook_keyframes_repatch_weights_without_disturbing_the_adapter(setup):
    model, patched = setup
    before = probe.options_snapshot(model.model_options)
    base_latent = harness.sample(model)
    hooks = _with_keyframes(_weight_hook(model), (1.0, 0.0), (0.0, 0.5))
    first = harness.sample(patched, steps=4, positive_hooks=hooks)
    assert vf.changed(first, harness.sample(model, steps=4, positive_hooks=hooks))
    assert torch.equal(first, harness.sample(patched, steps=4, positive_hooks=hooks))
    # The keyframe took effect: strength 0 from half-way is not the hook at full strength throughout (late
    # steps move the latent little, so any difference counts).
    assert not torch.equal(first, harness.sample(patched, steps=4, positive_hooks=_weight_hook(model)))
    # Nothing leaked into the input model: its options and its weights are as before.
    assert probe.options_snapshot(model.model_options) == before
    assert torch.equal(harness.sample(model), base_latent)


def test_a_weight_hook_on_both_conds_equals_the_same_lora_merged(setup):
    """With the hook on every call the run is the merged-LoRA run: the patch sees the same q either way."""
    import comfy.lora

    model, patched = setup
    hooks = _weight_hook(model)
    (hook,) = hooks.hooks
    merged = patched.clone()
    merged.add_patches(comfy.lora.load_lora(hook.weights, comfy.lora.model_lora_keys_unet(patched.model, {}),
                                            log_missing=False), 1.0)
    both = harness.sample(patched, positive_hooks=hooks, negative_hooks=hooks)
    assert vf.changed(both, harness.sample(patched, positive_hooks=hooks))
    assert torch.allclose(both, harness.sample(merged), rtol=1e-4, atol=1e-4)
