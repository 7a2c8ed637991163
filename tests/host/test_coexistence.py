"""Our adapters next to other patchers (issue 7 §2, user-pains theme 8).

InstantID, PuLID and AnimateDiff-style packs put their own attn2 replacement on the same sites; the
incumbent then either overwrote them or called methods (``add``, ``set_new_condition``) that only its
own class has. Here a stand-in foreign replacement, written in this file, is placed before and after
ours: both must act (the foreign change and our image attention are both in the output) and nothing
may raise. ComfyUI's own patchers (LoRA weight patches, RescaleCFG, a context-window ``ad_params``)
must keep working with our adapters applied, and ``clone()`` must share our patch objects.
"""

from __future__ import annotations

import torch

from tests.fixtures.comfy_models import attn2_sites
from tests.host import adapters, harness, probe

NAME = "sd15-reduced"
OFFSET = 0.05  # what the foreign patch adds to the block's attention output: easy to see, harmless


def _attention_type():
    return harness.pack_module("ipadapter_core.attention").CrossAttentionPatch


def _setup(unet, ipadapter_dir, seed: int = 0):
    model = unet(NAME)
    return model, adapters.load(adapters.adapter_file(ipadapter_dir, NAME, model, seed=seed))


def _ours(model, ipadapter, clip_vision, image, weight=1.0):
    return adapters.apply(model, ipadapter, image, clip_vision, weight=weight)


class CallLog(list):
    """A call record that survives the host's deep copies (the foreign object itself is copied on clone)."""

    def __deepcopy__(self, memo):
        return self


class ForeignObject:
    """Like InstantID's/PuLID's Attn2Replace: its own methods, a ``.to``, deep-copied by the host on clone."""

    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.moves = CallLog()
        self.conditions = CallLog()

    def add(self, condition) -> None:  # a method only this class has; we must never call it
        self.conditions.append(condition)

    def set_new_condition(self, **kwargs) -> None:
        raise AssertionError("another pack's private method was called")

    def to(self, device_or_dtype):
        self.moves.append(device_or_dtype)
        return self

    def __call__(self, q, k, v, extra):
        self.calls.append(tuple(extra["block"]))
        return probe.base_attention(q, k, v, extra) + OFFSET


def _foreign_function(calls: list):
    def foreign(q, k, v, extra):
        calls.append(tuple(extra["block"]))
        return probe.base_attention(q, k, v, extra) + OFFSET

    return foreign


def _with_foreign(model, make, two_tuple: bool = False):
    """A clone with the foreign replacement on every site (3-tuple keys, or the 2-tuple form)."""
    out = model.clone()
    for key, _ in attn2_sites(model):
        out.set_model_attn2_replace(make(), *(key[:2] if two_tuple else key))
    return out


def test_ours_after_a_foreign_patch_keeps_it_running(pack, unet, ipadapter_dir, clip_vision, reference_image):
    model, ipa = _setup(unet, ipadapter_dir)
    inputs = probe.capture(model)
    ours_alone = probe.contributions(_ours(model, ipa, clip_vision, reference_image), inputs)
    for style in ("function", "object", "function-2tuple"):
        calls = CallLog()
        factory = _foreign_function if style.startswith("function") else ForeignObject

        def make(factory=factory, calls=calls):
            return factory(calls)

        foreign = _with_foreign(model, make, two_tuple=style.endswith("2tuple"))
        both = _ours(foreign, ipa, clip_vision, reference_image)
        for key, _ in attn2_sites(model):
            patch = probe.patch_at(both, key)
            assert isinstance(patch, _attention_type()), f"{style}: no patch of ours at {key}"
            assert patch.inner is not None, f"{style}: the foreign patch at {key} was dropped"
        combined = probe.contributions(both, inputs)
        for key in inputs:  # foreign offset + our image attention, each exactly once
            torch.testing.assert_close(combined[key], ours_alone[key] + OFFSET, rtol=1e-4, atol=1e-5)
        latent = harness.sample(both, steps=1)
        assert calls, f"{style}: the foreign patch never ran while sampling"
        assert torch.isfinite(latent).all()


def test_foreign_patch_after_ours_that_wraps_the_previous_one(pack, unet, ipadapter_dir, clip_vision,
                                                              reference_image):
    """A later pack that calls whatever was on the site: it sees a plain callable and both act."""
    model, ipa = _setup(unet, ipadapter_dir)
    inputs = probe.capture(model)
    ours = _ours(model, ipa, clip_vision, reference_image)
    ours_alone = probe.contributions(ours, inputs)
    later = ours.clone()
    calls: list = []
    for key, _ in attn2_sites(model):
        previous = probe.patch_at(ours, key)

        def wrapper(q, k, v, extra, previous=previous, key=key):
            calls.append(key)
            return previous(q, k, v, extra) + OFFSET

        later.set_model_attn2_replace(wrapper, *key)
    combined = probe.contributions(later, inputs)
    for key in inputs:
        torch.testing.assert_close(combined[key], ours_alone[key] + OFFSET, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(harness.sample(later, steps=1)).all() and calls
    # The model we wrapped is untouched: our patches are still there, not the wrapper.
    assert all(isinstance(probe.patch_at(ours, key), _attention_type()) for key, _ in attn2_sites(model))


def test_host_moves_reach_the_foreign_object_and_private_methods_are_never_called(pack, unet, ipadapter_dir,
                                                                                  clip_vision, reference_image):
    model, ipa = _setup(unet, ipadapter_dir)
    calls = CallLog()
    objects: list[ForeignObject] = []

    def make():
        objects.append(ForeignObject(calls))
        return objects[-1]

    both = _ours(_with_foreign(model, make), ipa, clip_vision, reference_image)
    both.model_patches_to(torch.device("cpu"))
    both.model_patches_to(torch.float32)
    inners = [probe.patch_at(both, key).inner for key, _ in attn2_sites(model)]
    assert all(torch.float32 in inner.moves and torch.device("cpu") in inner.moves for inner in inners)
    assert not any(inner.conditions for inner in inners), "our code called the foreign object's add()"
    # A second adapter stacks on ours and keeps the same foreign inner.
    _, second = _setup(unet, ipadapter_dir, seed=1)
    stacked = _ours(both, second, clip_vision, torch.flip(reference_image, dims=[1]))
    for key, _ in attn2_sites(model):
        patch = probe.patch_at(stacked, key)
        assert len(patch.applications) == 2 and patch.inner is probe.patch_at(both, key).inner
    assert torch.isfinite(harness.sample(stacked, steps=1)).all()


def test_clone_shares_our_patch_objects_and_tensors(pack, unet, ipadapter_dir, clip_vision, reference_image):
    model, ipa = _setup(unet, ipadapter_dir)
    patched = _ours(model, ipa, clip_vision, reference_image)
    clone = patched.clone()
    for key, _ in attn2_sites(model):
        a, b = probe.patch_at(patched, key), probe.patch_at(clone, key)
        assert a is b, f"clone() copied our patch at {key}"
        for app_a, app_b in zip(a.applications, b.applications, strict=True):
            kv_a, kv_b = app_a.sites[key], app_b.sites[key]
            assert kv_a.k_cond.data_ptr() == kv_b.k_cond.data_ptr()
            assert kv_a.v_uncond.data_ptr() == kv_b.v_uncond.data_ptr()


def _random_lora(model, seed: int, rank: int = 4, layers: int = 6) -> dict[str, torch.Tensor]:
    """A kohya-style LoRA on the first attention projections ComfyUI maps for this UNet."""
    import comfy.lora

    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    weights = model.model.state_dict()
    chosen = [k for k, target in sorted(key_map.items())
              if isinstance(target, str) and k.startswith("lora_unet_") and ".attn" in target
              and target.endswith(".weight") and weights[target].dim() == 2][:layers]
    assert chosen, "no LoRA-mappable attention layers in the test UNet"
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for key in chosen:
        out_dim, in_dim = weights[key_map[key]].shape
        lora[f"{key}.lora_up.weight"] = torch.randn(out_dim, rank, generator=gen) * 0.5
        lora[f"{key}.lora_down.weight"] = torch.randn(rank, in_dim, generator=gen) * 0.5
        lora[f"{key}.alpha"] = torch.tensor(float(rank))
    return lora


def test_comfy_lora_and_our_adapter_both_act_in_either_order(pack, unet, ipadapter_dir, clip_vision,
                                                             reference_image):
    import comfy.sd

    model, ipa = _setup(unet, ipadapter_dir)
    lora = _random_lora(model, seed=3)

    def with_lora(m):
        return comfy.sd.load_lora_for_models(m, None, lora, 1.0, 0)[0]

    base, lora_only, ipa_only = harness.sample(model), harness.sample(with_lora(model)), None
    ipa_model = _ours(model, ipa, clip_vision, reference_image)
    ipa_only = harness.sample(ipa_model)
    assert not torch.equal(lora_only, base), "the test LoRA has no effect"
    for combined in (with_lora(ipa_model), _ours(with_lora(model), ipa, clip_vision, reference_image)):
        assert combined.patches, "the LoRA weight patches were lost"
        assert all(isinstance(probe.patch_at(combined, key), _attention_type()) for key, _ in attn2_sites(model))
        latent = harness.sample(combined)
        assert not torch.equal(latent, lora_only) and not torch.equal(latent, ipa_only)
    # LoRA after us: the LoRA node's clone kept our very objects.
    lora_after = with_lora(ipa_model)
    assert all(probe.patch_at(lora_after, k) is probe.patch_at(ipa_model, k) for k, _ in attn2_sites(model))


def test_rescale_cfg_keeps_working(pack, unet, ipadapter_dir, clip_vision, reference_image):
    from comfy_extras.nodes_model_advanced import RescaleCFG

    model, ipa = _setup(unet, ipadapter_dir)
    ipa_model = _ours(model, ipa, clip_vision, reference_image)
    rescaled = harness.call_core_node(RescaleCFG, model=ipa_model, multiplier=0.7)[0]
    assert "sampler_cfg_function" in rescaled.model_options
    assert all(probe.patch_at(rescaled, k) is probe.patch_at(ipa_model, k) for k, _ in attn2_sites(model))
    latent = harness.sample(rescaled)
    assert not torch.equal(latent, harness.sample(ipa_model)), "RescaleCFG had no effect"
    plain = harness.call_core_node(RescaleCFG, model=model, multiplier=0.7)[0]
    assert not torch.equal(latent, harness.sample(plain)), "our adapter had no effect"


def test_context_window_rows_match_the_full_batch(pack, unet, ipadapter_dir, clip_vision, reference_image):
    """AnimateDiff-style ``ad_params``: a window of frames [2, 3] of 4 gets images 2 and 3, as in the full run."""
    model, ipa = _setup(unet, ipadapter_dir)
    frames = torch.cat([torch.roll(reference_image, shifts=40 * i, dims=2) for i in range(4)])
    batch = harness.run_node("IPAdapterBatch", model=model, ipadapter=ipa, image=frames, weight=1.0,
                             weight_type="linear", start_at=0.0, end_at=1.0, embeds_scaling="V only",
                             encode_batch_size=0, clip_vision=clip_vision)[0]
    key, width = attn2_sites(model)[0]
    patch = probe.patch_at(batch, key)
    gen = torch.Generator().manual_seed(5)
    q_full = torch.randn(4, 16, width, generator=gen)
    kv = torch.randn(4, 77, width, generator=gen)
    heads = model.model.diffusion_model.input_blocks[1][1].transformer_blocks[0].attn2.heads
    extra = {"n_heads": heads, "cond_or_uncond": [0], "original_shape": [4, 4, 8, 8], "block": key[:2],
             "block_index": key[2], "activations_shape": [4, width, 4, 4]}
    with torch.inference_mode():
        full = patch(q_full, kv, kv, dict(extra))
        window = patch(q_full[2:], kv[2:], kv[2:], {**extra, "original_shape": [2, 4, 8, 8],
                                                     "ad_params": {"sub_idxs": [2, 3], "full_length": 4}})
        plain = patch(q_full[2:], kv[2:], kv[2:], {**extra, "original_shape": [2, 4, 8, 8]})
    torch.testing.assert_close(window, full[2:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, full[2:], atol=1e-5), "without ad_params rows 0-1 would be used: guard"
    # And sampling a window of 2 latents with ad_params in transformer_options runs.
    windowed = batch.clone()
    windowed.model_options["transformer_options"]["ad_params"] = {"sub_idxs": [1, 3], "full_length": 4}
    assert torch.isfinite(harness.sample(windowed, steps=1, batch=2)).all()
