"""Flux (XLabs, InstantX) and SD3.5 (InstantX) adapters through IPAdapterAdvanced on reduced models built from
ComfyUI's own classes, sampled by ComfyUI's sampler: the invariants of issue 12 §6 (weight 0 and the sigma
window are bit-identical, the input model and the shared modules keep nothing, chunk routing, stacking,
clones, coexistence with block replacements and skip-layer guidance, fp16)."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.host import dit_cases as dc
from tests.host import harness

CASES = ["xlabs", "instantx", "sd3"]


@pytest.fixture(params=CASES)
def case(request, pack, ipadapter_dir, host_dirs):
    name = request.param
    family = dc.ADAPTERS[name][2]
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    model = dc.model(family)
    base = dc.cached(("dit-base", family), lambda: {cfg: dc.sample(model, family, cfg=cfg) for cfg in (1.0, 3.0)})
    return dict(name=name, family=family, model=model, ip=dc.load(ipadapter_dir, name),
                cv=dc.encoder_for(name, encs), image=dc.reference_image(), base=base)


def _apply(case, weight=1.0, model=None, **options):
    return dc.apply(model or case["model"], case["ip"], case["image"], case["cv"], weight=weight, **options)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_weight_zero_is_bit_identical_and_a_weight_acts(case, cfg):
    assert torch.equal(dc.sample(_apply(case, 0.0), case["family"], cfg=cfg), case["base"][cfg])
    out = dc.sample(_apply(case, 1.0), case["family"], cfg=cfg)
    assert (out - case["base"][cfg]).abs().max() > 1e-3 * case["base"][cfg].abs().max()


def test_outside_the_sigma_window_is_bit_identical(case):
    patched = _apply(case, 1.0, start_at=0.99, end_at=1.0)  # no sampled sigma lies in the last 1%
    assert torch.equal(dc.sample(patched, case["family"], cfg=3.0), case["base"][3.0])


def test_start_end_use_the_models_own_percent_to_sigma(case, monkeypatch):
    """The adapter acts exactly at the calls whose sigma lies in [sigma(end), sigma(start)] of model_sampling."""
    hooks = harness.pack_module("nodes.dit_hooks")
    acted: list[float] = []
    original = hooks.DitPatch._install

    def spy(self, dm, active, call, handles=None):
        acted.append(round(call.timestep, 6))
        return original(self, dm, active, call, handles)

    monkeypatch.setattr(hooks.DitPatch, "_install", spy)
    sampling = case["model"].get_model_object("model_sampling")
    seen: list[float] = []
    patched = _apply(case, 1.0, start_at=0.3, end_at=0.8)
    patched.set_model_unet_function_wrapper(lambda f, a: seen.append(float(a["timestep"][0])) or f(a["input"],
                                            a["timestep"], **a["c"]))
    dc.sample(patched, case["family"], steps=6)
    hi, lo = float(sampling.percent_to_sigma(0.3)), float(sampling.percent_to_sigma(0.8))
    expected = [round(float(sampling.timestep(torch.tensor(s))), 6) for s in seen if lo <= s <= hi]
    assert acted and acted == expected and len(expected) < len(seen)


def test_input_model_unchanged_and_no_hook_left(case):
    model = case["model"]
    wrappers, extra = repr(model.wrappers), dict(model.additional_models)
    patched = _apply(case, 1.0)
    assert patched is not model and repr(model.wrappers) == wrappers and model.additional_models == extra
    dc.sample(patched, case["family"], cfg=3.0)
    assert dc.hooks_on(model.model.diffusion_model) == 0
    assert torch.equal(dc.sample(model, case["family"], cfg=3.0), case["base"][3.0])


@pytest.mark.parametrize("error", ["RuntimeError", "InterruptProcessingException"])
def test_no_hook_left_after_an_exception_or_an_interruption(case, error):
    import comfy.model_management as mm

    exc = mm.InterruptProcessingException() if error != "RuntimeError" else RuntimeError("boom")
    patched = _apply(case, 1.0)

    def failing(args, extra):
        raise exc

    patched.set_model_patch_replace(failing, "dit", "double_block", 1)
    with pytest.raises(type(exc)):
        dc.sample(patched, case["family"])
    assert dc.hooks_on(case["model"].model.diffusion_model) == 0
    assert torch.equal(dc.sample(_apply(case, 0.0), case["family"], cfg=3.0), case["base"][3.0])


def test_same_graph_twice_and_clones_do_not_leak(case):
    first = dc.sample(_apply(case, 0.8), case["family"], cfg=3.0)
    other = dc.sample(_apply(case, 0.3), case["family"], cfg=3.0)
    assert torch.equal(dc.sample(_apply(case, 0.8), case["family"], cfg=3.0), first)
    assert not torch.equal(first, other)


def test_a_foreign_block_replacement_keeps_working_with_the_adapter(case, caplog):
    """PuLID-style: another node replaces block 0 and calls the original; both act, no warning."""
    def foreign(args, extra):
        out = extra["original_block"](args)
        out["img"] = out["img"] * 1.01
        return out

    only_foreign = case["model"].clone()
    only_foreign.set_model_patch_replace(foreign, "dit", "double_block", 0)
    both = _apply(case, 1.0, model=only_foreign)
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        a, b = dc.sample(only_foreign, case["family"]), dc.sample(both, case["family"])
    assert not torch.equal(a, case["base"][1.0]) and not torch.equal(a, b)
    assert not [r for r in caplog.records if "did not act" in r.getMessage()]


def test_a_skipped_block_gives_one_warning_not_silence(case, caplog):
    patched = _apply(case, 1.0)
    patched.set_model_patch_replace(lambda args, extra: {"img": args["img"], "txt": args["txt"]},
                                    "dit", "double_block", 0)
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        dc.sample(patched, case["family"], steps=3)
    warnings = [r.getMessage() for r in caplog.records if "did not act" in r.getMessage()]
    assert len(warnings) == 1 and ("double 0" in warnings[0] or "joint 0" in warnings[0])


def test_skip_layer_guidance_composes(case, caplog):
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT

    patched = _apply(case, 1.0)
    slg = harness.call_core_node(SkipLayerGuidanceDiT, model=patched, scale=2.0, start_percent=0.0, end_percent=1.0,
                                 double_layers="1", single_layers="")[0]
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        out = dc.sample(slg, case["family"], cfg=3.0)
    assert not torch.equal(out, dc.sample(patched, case["family"], cfg=3.0))
    assert any("skip-layer" in r.getMessage() for r in caplog.records)
    assert dc.hooks_on(case["model"].model.diffusion_model) == 0


def test_chunk_order_routes_each_branch_to_its_own_tokens(case):
    """One call with cond_or_uncond [1, 0] gives, row by row, what [1] and [0] give alone (and [0] = cfg 1)."""
    from tests.fixtures import dit_models

    patched = _apply(case, 1.0, image_negative=dc.reference_image(seed=5))
    family = case["family"]
    x = torch.randn(2, 16, dc.LATENT, dc.LATENT, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.7, 0.7])
    conds = [dc.conditioning(family, 1)[0], dc.conditioning(family, 2)[0]]

    def call(rows, chunks):
        ctx = torch.cat([conds[c][0] for c in chunks])
        y = torch.cat([conds[c][1]["pooled_output"] for c in chunks])
        return dit_models.run_comfy(patched, x[rows], sigma[rows], ctx, y, guidance=3.5 if family == "flux" else None,
                                    cond_or_uncond=list(chunks))

    both = call(slice(0, 2), [1, 0])
    torch.testing.assert_close(both[:1], call(slice(0, 1), [1]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both[1:], call(slice(1, 2), [0]), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(call(slice(1, 2), [0]), call(slice(1, 2), [1]))


def test_stacked_adapters_add_where_the_math_is_linear(case):
    """Only the last block acts (layer_weights), so the term enters one linear map: effects add up there."""
    last = 1
    probe_at = {"xlabs": lambda dm: dm.single_blocks[0], "instantx": lambda dm: dm.double_blocks[last].img_attn.proj,
                "sd3": lambda dm: dm.joint_blocks[last].x_block.attn.proj}[case["name"]]
    seen: list[torch.Tensor] = []
    dm = case["model"].model.diffusion_model
    module = probe_at(dm)
    if case["name"] == "xlabs":
        handle = module.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    else:
        handle = module.register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))
    try:
        def ms(model, image):
            return dc.apply(model, case["ip"], image, case["cv"], node="IPAdapterMS", weight_faceidv2=1.0,
                            layer_weights=f"{last}:1.0")

        a = ms(case["model"], dc.reference_image(1))
        ab = ms(a, dc.reference_image(2))
        b = ms(case["model"], dc.reference_image(2))
        for m in (case["model"], a, b, ab):
            dc.sample(m, case["family"], steps=1)
    finally:
        handle.remove()
    base, only_a, only_b, both = seen[-4:]
    torch.testing.assert_close(both - base, (only_a - base) + (only_b - base), atol=1e-5, rtol=1e-4)
    assert (only_a - base).abs().max() > 1e-6 and (only_b - base).abs().max() > 1e-6


def test_two_families_on_separate_clones(pack, ipadapter_dir, host_dirs):
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    model = dc.model("flux")
    xl = dc.apply(model, dc.load(ipadapter_dir, "xlabs"), dc.reference_image(), encs["vit-l"])
    ix = dc.apply(model, dc.load(ipadapter_dir, "instantx"), dc.reference_image(), encs["siglip"])
    both = dc.apply(xl, dc.load(ipadapter_dir, "instantx"), dc.reference_image(), encs["siglip"])
    outs = [dc.sample(m, "flux", cfg=3.0) for m in (xl, ix, both)]
    assert len({tuple(o.flatten()[:64].tolist()) for o in outs}) == 3
    assert torch.equal(dc.sample(xl, "flux", cfg=3.0), outs[0])


def test_sampler_custom_advanced_with_a_cfg_guider(case):
    import comfy.sample
    import comfy.samplers

    def run(m):
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(dc.conditioning(case["family"], 1), dc.conditioning(case["family"], 2))
        guider.set_cfg(3.0)
        latent = torch.zeros(1, 16, dc.LATENT, dc.LATENT)
        noise = comfy.sample.prepare_noise(latent, 7)
        sigmas = comfy.samplers.calculate_sigmas(m.get_model_object("model_sampling"), "simple", 3)
        with torch.inference_mode():
            return guider.sample(noise, latent, comfy.samplers.sampler_object("euler"), sigmas, seed=7)

    base = run(case["model"])
    assert torch.equal(run(_apply(case, 0.0)), base)
    assert not torch.equal(run(_apply(case, 1.0)), base)


def test_fp16_model_with_an_fp32_stored_adapter(pack, ipadapter_dir, host_dirs):
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    for name, family in (("xlabs", "flux"), ("sd3", "sd3")):
        model = dc.model(family, dtype=torch.float16)
        ip = dc.load(ipadapter_dir, name, dtype=torch.float32)
        base = dc.sample(model, family, cfg=3.0)
        out = dc.sample(dc.apply(model, ip, dc.reference_image(), dc.encoder_for(name, encs)), family, cfg=3.0)
        assert not torch.equal(out, base)


def test_encoder_then_embeds_equals_the_advanced_node(case):
    pos, neg = harness.run_node("IPAdapterEncoder", ipadapter=case["ip"], image=case["image"], weight=1.0,
                                clip_vision=case["cv"])
    via_embeds = harness.run_node("IPAdapterEmbeds", model=case["model"], ipadapter=case["ip"], pos_embed=pos,
                                  weight=1.0, weight_type="linear", start_at=0.0, end_at=1.0,
                                  embeds_scaling="V only", neg_embed=neg, clip_vision=case["cv"])[0]
    assert torch.equal(dc.sample(via_embeds, case["family"], cfg=3.0), dc.sample(_apply(case), case["family"], cfg=3.0))


def test_batch_and_enhancer_nodes_act_on_transformers(case):
    two = torch.cat([dc.reference_image(1), dc.reference_image(2)])
    batch = dc.apply(case["model"], case["ip"], two, case["cv"], node="IPAdapterBatch", encode_batch_size=0)
    out = dc.sample(batch, case["family"], batch=2)
    assert not torch.equal(out, dc.sample(case["model"], case["family"], batch=2))
    enhanced = dc.apply(case["model"], case["ip"], dc.reference_image(size=112), case["cv"],
                        node="IPAdapterClipVisionEnhancer", enhance_tiles=2, enhance_ratio=0.5)
    plain = dc.apply(case["model"], case["ip"], dc.reference_image(size=112), case["cv"])
    assert not torch.equal(dc.sample(enhanced, case["family"]), dc.sample(plain, case["family"]))


def test_tiled_node_masks_each_tile_on_the_token_grid(case):
    wide = torch.rand(1, 64, 160, 3, generator=torch.Generator().manual_seed(4))  # cut into several tiles
    patched, tiles, masks = harness.run_node(
        "IPAdapterTiled", model=case["model"], ipadapter=case["ip"], image=wide, weight=1.0, weight_type="linear",
        start_at=0.0, end_at=1.0, sharpening=0.0, embeds_scaling="V only", combine_embeds="concat",
        encode_batch_size=0, clip_vision=case["cv"])
    assert tiles.shape[0] > 1 and masks.shape[0] == tiles.shape[0]
    assert not torch.equal(dc.sample(patched, case["family"], cfg=3.0), case["base"][3.0])


def test_terms_are_the_same_outside_inference_mode(case):
    """Inside inference mode (ComfyUI's executor) and under plain no_grad the terms are added in place into the
    block's fresh tensors; both give the same result."""
    import comfy.model_management as mm

    from tests.fixtures import dit_models

    patched = _apply(case, 1.0)
    x = torch.randn(1, 16, dc.LATENT, dc.LATENT, generator=torch.Generator().manual_seed(3))
    ctx, extra = dc.conditioning(case["family"], 1)[0]
    kw = {"y": extra["pooled_output"]} | ({"guidance": torch.tensor([3.5])} if case["family"] == "flux" else {})
    sigma = torch.tensor([0.6])
    reference = dit_models.run_comfy(patched, x, sigma, ctx, extra["pooled_output"],
                                     guidance=3.5 if case["family"] == "flux" else None)
    mm.load_models_gpu([patched] + patched.get_nested_additional_models())
    options = dit_models.sampling_transformer_options(patched, sigma)
    with torch.no_grad():
        out = patched.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options=options, **kw)
    torch.testing.assert_close(out.detach(), reference, atol=1e-5, rtol=1e-5)
    assert dc.hooks_on(case["model"].model.diffusion_model) == 0


def test_a_weight_only_requeue_runs_no_encoder(case, monkeypatch):
    """The encoding cache covers ViT-L and SigLIP (pooled through the head, or hidden states): a changed weight
    re-applies without encoding again."""
    encoding = harness.pack_module("nodes.encoding")
    monkeypatch.setattr(encoding, "ENCODINGS", encoding.EncodingCache())
    calls: list[int] = []
    original = case["cv"].encode_image
    monkeypatch.setattr(case["cv"], "encode_image", lambda image, **kw: calls.append(1) or original(image, **kw))
    _apply(case, 0.5)
    first = len(calls)
    _apply(case, 0.9)
    assert first >= 1 and len(calls) == first


def test_no_hook_left_when_installing_them_fails_half_way(pack, ipadapter_dir, host_dirs, monkeypatch):
    hooks = harness.pack_module("nodes.dit_hooks")
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    model = dc.model("flux")
    patched = dc.apply(model, dc.load(ipadapter_dir, "xlabs"), dc.reference_image(), encs["vit-l"])

    def broken(self, site, call, users):
        raise RuntimeError("injection hook could not be built")

    monkeypatch.setattr(hooks.DitPatch, "_inject_block_output", broken)  # after the first capture hook exists
    with pytest.raises(RuntimeError, match="could not be built"):
        dc.sample(patched, "flux")
    assert dc.hooks_on(model.model.diffusion_model) == 0


def test_preprocessing_follows_each_encoders_reference(case, monkeypatch):
    """XLabs' CLIP processor centre-crops; SigLIP's processor (InstantX) squashes the image to its square."""
    encoding = harness.pack_module("nodes.encoding")
    monkeypatch.setattr(encoding, "ENCODINGS", encoding.EncodingCache())
    crops: list[bool] = []
    original = case["cv"].encode_image
    monkeypatch.setattr(case["cv"], "encode_image", lambda image, crop=True: crops.append(crop) or original(
        image, crop=crop))
    _apply(case, 1.0)
    assert crops and set(crops) == {case["name"] == "xlabs"}


@pytest.mark.parametrize("name", ["xlabs", "instantx"])
def test_several_references_concatenate_their_tokens(pack, ipadapter_dir, host_dirs, name):
    """A prompt-only attention over a duplicated token set equals the single set's: [A, A] == [A]; [A, B] differs."""
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    model, ip, cv = dc.model("flux"), dc.load(ipadapter_dir, name), dc.encoder_for(name, encs)
    a, b = dc.reference_image(1), dc.reference_image(2)
    one = dc.sample(dc.apply(model, ip, a, cv), "flux")
    twice = dc.sample(dc.apply(model, ip, torch.cat([a, a]), cv), "flux")
    both = dc.sample(dc.apply(model, ip, torch.cat([a, b]), cv), "flux")
    torch.testing.assert_close(twice, one, atol=1e-4, rtol=1e-4)
    assert (both - one).abs().max() > 100 * (twice - one).abs().max()
