"""The adapter on a real CUDA device (issue 15): run by ``scripts/gpu_check.sh`` with ``IPAS_DEVICE=cuda``.

Full-size SD1.5 and SDXL UNets (random weights) stored in ``$IPAS_UNET_DTYPE`` (fp16, bf16 or fp8, computed
in fp16), sampled by ComfyUI's own sampler:
* weight 0 is bit-identical to the unpatched model, and a weight acts, with finite output;
* the per-step path adds no device->host synchronisation (counted with ``torch.cuda.set_sync_debug_mode``,
  against the same sampling without the adapter, which has the sampler's own);
* offloading (``--novram``/``--lowvram`` in ``$IPAS_HOST_ARGS``: weights streamed layer by layer) gives the
  fully loaded result, and after ComfyUI unloads the model no cached tensor of the patch stays on the GPU.
Everywhere else the module skips with one line. ``IPAS_CUDA_REHEARSAL=1`` runs what can run on the CPU
(reduced models, no sync counting), to catch a broken test before GPU time is spent on it.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.host import adapters, harness

REHEARSAL = os.environ.get("IPAS_CUDA_REHEARSAL") == "1"
if not REHEARSAL and (harness.device() != "cuda" or not torch.cuda.is_available()):
    pytest.skip("CUDA checks: not on a CUDA device (they run in scripts/gpu_check.sh with IPAS_DEVICE=cuda)",
                allow_module_level=True)

DTYPES = {"fp32": (torch.float32, None), "fp16": (torch.float16, None), "bf16": (torch.bfloat16, None),
          "fp8": (torch.float8_e4m3fn, torch.float16)}
DTYPE_NAMES = os.environ.get("IPAS_UNET_DTYPES", "fp16,bf16,fp8").split(",")
MODELS = os.environ.get("IPAS_CUDA_UNETS", "sd15-reduced" if REHEARSAL else "sd15-full,sdxl-full").split(",")
LATENT = {"sd15": 64, "sdxl": 128}  # 512 and 1024 px


@pytest.fixture(scope="module", params=[(m, d) for m in MODELS for d in DTYPE_NAMES], ids="-".join)
def case(request, comfy, ipadapter_dir, clip_vision, reference_image):
    """One full-size UNet in one storage dtype; the seeded weights are made once per UNet and cast."""
    import comfy.model_management as mm

    from tests.fixtures.comfy_models import build_unet, family_of

    name, dtype = request.param
    if harness.CACHE.get("cuda-unet-name") != name:  # one UNet's weights at a time (SDXL: 10 GB in fp32)
        harness.CACHE.pop("cuda-unet", None)
        mm.unload_all_models()
        harness.CACHE["cuda-unet-state"] = build_unet(name, 0).model.diffusion_model.state_dict()
        harness.CACHE["cuda-unet-name"] = name
    model = build_unet(name, 0, *DTYPES[dtype], state=harness.CACHE["cuda-unet-state"])
    harness.CACHE["cuda-unet"] = model
    ip = adapters.load(adapters.adapter_file(ipadapter_dir, name, model))
    size = LATENT[family_of(name)] if "full" in name else 16
    return dict(model=model, ip=ip, cv=clip_vision, image=reference_image, size=size)


def _apply(case, **options):
    options.setdefault("weight", 1.0)
    return adapters.apply(case["model"], case["ip"], case["image"], case["cv"], **options)


def _sample(case, model, steps: int = 2):
    return harness.sample(model, size=case["size"], steps=steps)


def test_weight_zero_is_bit_identical_and_a_weight_acts(case):
    base = _sample(case, case["model"])
    assert torch.equal(_sample(case, _apply(case, weight=0.0)), base)
    acted = _sample(case, _apply(case))
    assert torch.isfinite(acted).all() and not torch.equal(acted, base)


def _syncs(case, model) -> int:
    """How many synchronising CUDA calls one sampling makes (the sampler's own included)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _sample(case, model, steps=3)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.skipif(REHEARSAL, reason="sync counting needs CUDA")
def test_the_per_step_path_adds_no_device_to_host_sync(case):
    """Same count with and without the adapter, with a sigma window (the on-device gate) and a mask."""
    _sample(case, case["model"])  # load and warm both, so loading does not count
    mask = torch.ones(1, 64, 64)
    patched = _apply(case, start_at=0.2, end_at=0.8, attn_mask=mask)
    _sample(case, patched)
    assert _syncs(case, patched) == _syncs(case, case["model"])


def _patch_cache_devices(model) -> set[str]:
    """Device types of every tensor held in the caches (``DeviceCache``) of the pack's patches on ``model``.

    The patch's constants (projected K/V) stay where they were built, by design; caches must follow."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(obj, in_cache: bool, depth: int = 0) -> None:
        if id(obj) in seen or depth > 10:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if in_cache:
                found.add(obj.device.type)
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value, in_cache, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, in_cache, depth + 1)
        elif type(obj).__name__ == "DeviceCache":
            for value in obj.values():
                walk(value, True, depth + 1)
        elif hasattr(obj, "__dict__") and ".ipadapter_core." in "." + type(obj).__module__:
            for value in vars(obj).values():
                walk(value, in_cache, depth + 1)

    for patch in model.model_options["transformer_options"]["patches_replace"]["attn2"].values():
        walk(patch, False)
    return found


@pytest.mark.skipif(not any(f in harness.host_args() for f in ("--novram", "--lowvram")),
                    reason="offloading: run with IPAS_HOST_ARGS=--novram (or --lowvram)")
def test_offloaded_model_gives_the_loaded_result_and_keeps_nothing_on_the_gpu(case):
    import comfy.model_management as mm

    patched = _apply(case)
    out = _sample(case, patched)
    assert torch.isfinite(out).all()
    loaded = "cpu" if REHEARSAL else "cuda"
    assert loaded in _patch_cache_devices(patched), "the check is blind: no cached tensor was on the device"
    mm.unload_all_models()
    mm.soft_empty_cache()
    assert _patch_cache_devices(patched) <= {"cpu"}, "a cached tensor stayed on the GPU after unloading"
    assert torch.equal(_sample(case, patched), out), "sampling again after the unload changed the result"
