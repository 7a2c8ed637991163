"""Whole-model check for ``dit_step.py --model``: one reduced-width Flux call with and without an adapter.

A ComfyUI Flux (``tests/fixtures/dit_models.build_flux``: hidden 256, 2 heads of 128, the real 19 double and
38 single blocks) gets XLabs v1 and InstantX adapters at the same width with their real token counts, applied
through the pack's own DiT path (``build_dit_application`` + ``patch_dit``, what IPAdapterAdvanced calls after
encoding; random encoder outputs stand in for CLIP/SigLIP). ``BaseModel.apply_model`` is timed as a sampler
calls it, interleaved. The expected added time is the same ``DitPatch`` around stand-in blocks of the same
shapes that compute nothing (capture, terms, injection and hooks only), timed in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch
from dit_parts import fixture, stand_in_model

HIDDEN, HEADS, DOUBLE, SINGLE, LATENT, TXT = 256, 2, 19, 38, 32, 256


def _adapter(pack, name: str, sd: dict):
    weights = pack.ipadapter_core.loading.split_adapter_sections(sd, f"{name}.safetensors")
    return pack.ipadapter_core.adapter.IPAdapterModel(weights, name)


def whole_model_check(pack, rounds: int, weight: float, seed: int = 0) -> dict:
    import comfy.model_management as mm
    from comfy.patcher_extension import WrappersMP

    fx, fxa = fixture("dit_models"), fixture("dit_adapters")
    dit_apply, hooks = pack.nodes.dit_apply, pack.nodes.dit_hooks
    g = torch.Generator().manual_seed(seed)
    model = fx.build_flux(seed=seed, hidden=HIDDEN, heads=HEADS, depth=DOUBLE, depth_single=SINGLE)
    adapters = {
        "XLabs v1 (4 tok)": (_adapter(pack, "xlabs-v1", fxa.xlabs_state_dict(
            hidden=HIDDEN, tokens=4, n_double=DOUBLE)), torch.randn(1, 768, generator=g)),
        "InstantX (128 tok)": (_adapter(pack, "instantx", fxa.instantx_flux_state_dict(
            hidden=HIDDEN, tokens=128, n_blocks=DOUBLE + SINGLE, siglip=64)), torch.randn(1, 64, generator=g)),
    }
    patchers = {"base": model}
    for label, (adapter, embeds) in adapters.items():
        clone = model.clone()
        app = dit_apply.build_dit_application(clone, adapter, embeds, torch.zeros_like(embeds), weight=weight)
        dit_apply.patch_dit(clone, app)
        patchers[label] = clone
    x = torch.randn(1, 16, LATENT, LATENT, generator=g)
    context = torch.randn(1, TXT, 4096, generator=g)
    y = torch.randn(1, 768, generator=g)
    sigma = torch.tensor([0.8])
    calls = {}
    for label, p in patchers.items():
        mm.load_models_gpu([p] + p.get_nested_additional_models())
        options = fx.sampling_transformer_options(p, sigma, cond_or_uncond=[0])
        calls[label] = (lambda p=p, options=options: p.model.apply_model(
            x, sigma, c_crossattn=context, transformer_options=options, y=y, guidance=torch.tensor([3.5])))

    # The same wrappers around stand-in blocks: what the adapter path alone costs per call at these shapes.
    grid = (LATENT // 2) ** 2
    dm = stand_in_model(HIDDEN, HEADS, DOUBLE, SINGLE)
    q_d = torch.randn(1, HEADS, grid, HIDDEN // HEADS, generator=g)
    q_s = torch.randn(1, HEADS, grid + TXT, HIDDEN // HEADS, generator=g)
    img, attn = torch.randn(1, grid, HIDDEN, generator=g), torch.randn(1, grid, HIDDEN, generator=g)
    lin2_in = torch.randn(1, grid + TXT, 5 * HIDDEN, generator=g)

    class StandInModel:
        class_obj = type("Base", (), {"diffusion_model": dm, "model_sampling": model.model.model_sampling})

        def __call__(self, *args, **kwargs):
            for block in dm.double_blocks:
                block(q_d, img, attn)
            for block in dm.single_blocks:
                block(q_s, lin2_in)

    stand_in = StandInModel()
    latent = torch.empty(1, 16, LATENT, LATENT, device="meta")
    ctx = torch.empty(1, TXT, 4096, device="meta")
    calls["stand-in, no adapter"] = lambda: stand_in(latent, sigma, None, ctx, None, {})
    for label in adapters:
        patch = [w for w in patchers[label].get_wrappers(WrappersMP.APPLY_MODEL, hooks.WRAPPER_KEY)][-1]
        options = {"cond_or_uncond": [0], "sigmas": sigma}
        calls[f"stand-in, {label}"] = (lambda patch=patch, options=options: patch(
            stand_in, latent, sigma, None, ctx, None, options))

    names = list(calls)
    wall: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        reference = calls["base"]()
        differs = {label: float((calls[label]() - reference).abs().max()) for label in adapters}
        for r in range(rounds + 1):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                calls[name]()
                if r:
                    wall[name].append((time.perf_counter() - start) * 1e3)
            print(f"  whole reduced Flux: round {r + 1}/{rounds + 1}{' (warm-up)' if not r else ''}", flush=True)
    out = {"shape": f"hidden {HIDDEN} ({HEADS} heads x 128), {DOUBLE} double + {SINGLE} single blocks, "
                    f"{grid} image + {TXT} text tokens, batch 1, fp32",
           "base_ms": statistics.median(wall["base"]), "base_spread_ms": max(wall["base"]) - min(wall["base"]),
           "rounds": rounds, "raw_ms": wall, "adapters": {}}
    for label in adapters:
        added = statistics.median(a - b for a, b in zip(wall[label], wall["base"], strict=True))
        expected = statistics.median(a - b for a, b in zip(wall[f"stand-in, {label}"], wall["stand-in, no adapter"],
                                                          strict=True))
        out["adapters"][label] = {"call_ms": statistics.median(wall[label]), "added_ms": added,
                                  "added_min_ms": min(wall[label]) - min(wall["base"]), "expected_ms": expected,
                                  "output_changed_by": differs[label]}
    return out
