"""Pieces of ``dit_step.py`` that need no timing loop of their own: the fixed cost of one model call through
``DitPatch`` (hooks for every block of the full-size models, built on the meta device) and the bytes of one
application's state (the pack's own ``FluxPromptKV`` / ``SD3PromptState`` over meta tensors)."""

from __future__ import annotations

import logging
import statistics
import time
from types import SimpleNamespace

import torch
from dit_parts import fixture

FLUX_HEADS, FLUX_HIDDEN, FLUX_CONTEXT, SD3_JOINT, SD3_FEATURES = 24, 3072, 4096, 38, (729, 1152)


# --------------------------------------------------------------------------------------------------
# Fixed per-call cost: hooks for every block of the full models (meta device)
# --------------------------------------------------------------------------------------------------


def meta_models() -> dict:
    import comfy.supported_models as sm

    fx = fixture("dit_models")
    out = {}
    for name, config in (("flux", sm.Flux(fx.flux_unet_config(3072, 24, 19, 38))),
                         ("sd3", sm.SD3(fx.sd3_unet_config(depth=38, pos_embed_max_size=192)))):
        config.set_inference_dtype(torch.float32, None)
        with torch.device("meta"):
            out[name] = config.get_model({})
    return out


def hook_overhead(pack, kinds: dict, models: dict, iterations: int) -> dict:
    """Per model call: ``_install`` + removing the handles alone, and the whole ``DitPatch.__call__`` around an
    executor that computes nothing (no block fires, so ``_report`` lists every block: an upper bound)."""
    app_mod, hooks = pack.ipadapter_core.dit.application, pack.nodes.dit_hooks
    layouts = {"flux": hooks.layout_of(models["flux"].diffusion_model),
               "sd3": hooks.layout_of(models["sd3"].diffusion_model)}
    cases = {"XLabs (19 double)": ("xlabs-v1", "flux"), "InstantX Flux (19 + 38)": ("instantx-flux", "flux"),
             "SD3.5-Large (38 joint)": ("instantx-sd3", "sd3")}
    out = {}
    logger = logging.getLogger("ipadapter_suite")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the empty call fires no block: the pack warns once per adapter
    for label, (kname, mname) in cases.items():
        kind, model = kinds[kname], models[mname]
        a = app_mod.DitApplication(kind=kind, label=kname, targets=tuple(app_mod.targets(kind, layouts[mname], 1.0)),
                                   state=torch.nn.Module(), heads=layouts[mname].heads)
        patch = hooks.DitPatch((a,))
        dm = model.diffusion_model
        x = torch.zeros(1, 16, 128, 128)
        call = hooks._Call(x, [0], torch.zeros(1, 8, 4096), 1.0)
        base = SimpleNamespace(diffusion_model=dm, model_sampling=model.model_sampling)

        class NoModel:
            """An APPLY_MODEL executor whose model does nothing: the call costs only the wrapper."""

            class_obj = base

            def __call__(self, *args, **kwargs):
                return None

        executor = NoModel()
        options = {"cond_or_uncond": [0], "sigmas": torch.tensor([0.5])}

        def install(patch=patch, dm=dm, a=a, call=call):
            for handle in patch._install(dm, [a], call):
                handle.remove()

        def full(patch=patch, executor=executor, options=options, x=x):
            patch(executor, x, torch.tensor([0.5]), transformer_options=options)

        handles = patch._install(dm, [a], call)
        for handle in handles:
            handle.remove()
        res = {"targets": len(a.targets), "hooks": len(handles)}
        for key, fn in (("install_remove_ms", install), ("call_ms", full)):
            fn()
            batch_times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(iterations):
                    fn()
                batch_times.append((time.perf_counter() - start) * 1e3 / iterations)
            res[key] = statistics.median(batch_times)
        out[label] = res
    logger.setLevel(level)
    return out


# --------------------------------------------------------------------------------------------------
# Memory of one application's state
# --------------------------------------------------------------------------------------------------


def state_bytes(pack, kinds: dict) -> dict:
    app_mod = pack.ipadapter_core.dit.application
    fx = fixture("dit_adapters")

    def size(module) -> int:
        return sum(p.numel() * p.element_size() for p in module.parameters())

    out = {}
    for label, kname, entries in (("XLabs v1 (4 tok)", "xlabs-v1", 19), ("XLabs v2 (16 tok)", "xlabs-v2", 19),
                                  ("InstantX Flux (128 tok)", "instantx-flux", 57)):
        n = kinds[kname].tokens
        row = {}
        for dtype in (torch.float32, torch.bfloat16):
            kv = {e: tuple(torch.empty(1, FLUX_HEADS, n, 128, device="meta", dtype=dtype) for _ in range(4))
                  for e in range(entries)}
            row[str(dtype).removeprefix("torch.")] = size(app_mod.FluxPromptKV(kv))
        row["kv_weights_bf16"] = entries * 2 * FLUX_HIDDEN * (FLUX_CONTEXT + (1 if "xlabs" in kname else 0)) * 2
        out[label] = row
    sd = fx.instantx_sd3_state_dict(device="meta")
    weights = pack.ipadapter_core.loading.split_adapter_sections(sd, "sd3.bin")
    row = {}
    for dtype in (torch.float32, torch.bfloat16):
        with torch.device("meta"):
            resampler = kinds["instantx-sd3"].build()
        feats = torch.empty(1, *SD3_FEATURES, device="meta")
        st = app_mod.SD3PromptState(resampler, weights.ip_adapter, list(range(SD3_JOINT)), feats, feats,
                                    concat=True, dtype=dtype)
        row[str(dtype).removeprefix("torch.")] = size(st)
        row[f"resampler_{str(dtype).removeprefix('torch.')}"] = size(st.resampler)
    out["SD3.5-Large (64 tok)"] = row
    return out
