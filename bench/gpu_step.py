"""Whole UNet steps on CUDA with and without one adapter, and the GPU memory adapters add (issue 15).

Full-size SD1.5 at 512 px (and SDXL at 1024 px with ``--sdxl``), random weights stored in fp16, batch 1
with CFG (cond + uncond rows, as KSampler runs them). Variants are interleaved in rounds, each timed with
CUDA events around the model call; the report gives medians and the ratio with/without the adapter,
measured in the same run. Peak memory: ``torch.cuda.max_memory_allocated`` over one step of the loaded
model, without an adapter and with one and four. Nothing is asserted; the numbers go to ``--json``.

    IPAS_DEVICE=cuda python bench/gpu_step.py --json OUT/gpu_step.json [--sdxl] [--rounds 30]

``--rehearse`` runs the same code on the CPU with a reduced UNet and 2 rounds (no memory figures), so a
broken script is found before GPU time is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("IPAS_DEVICE", "cuda")

import torch  # noqa: E402

from tests.host import adapters, harness  # noqa: E402

LATENT = {"sd15-full": 64, "sdxl-full": 128, "sd15-reduced": 16}
REHEARSE = "--rehearse" in sys.argv
if REHEARSE:
    os.environ["IPAS_DEVICE"] = "cpu"
DEVICE = "cpu" if REHEARSE else "cuda"


def _inputs(model, size: int, device: torch.device):
    """One model call's inputs: 2 rows (cond, uncond), the sampler's first sigma."""
    context = harness.context_dim(model)
    sdxl = context == 2048
    cond = harness.conditioning(context, 1, sdxl)[0]
    x = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(3)).to(device)
    sigma = torch.full((2,), 7.0, device=device)
    c = {"c_crossattn": cond[0].repeat(2, 1, 1).to(device),
         "transformer_options": {"cond_or_uncond": [0, 1]}}
    if sdxl:
        c["y"] = torch.randn(2, 2816, generator=torch.Generator().manual_seed(4)).to(device)
    return x, sigma, c


def _call(patcher, x, sigma, c):
    """One UNet call as the sampler makes it, with the patcher's transformer options (our patches)."""
    options = dict(c)
    options["transformer_options"] = {**patcher.model_options.get("transformer_options", {}),
                                      **c["transformer_options"]}
    return patcher.model.apply_model(x, sigma, **options)


def _loaded(patcher):
    import comfy.model_management as mm

    mm.load_models_gpu([patcher])
    return patcher


def _timed(call) -> float:
    """Milliseconds of one call: CUDA events on the GPU, the wall clock in a rehearsal."""
    if REHEARSE:
        start = time.perf_counter()
        call()
        return (time.perf_counter() - start) * 1000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def step_times(variants: dict, size: int, rounds: int) -> dict[str, float]:
    """Median ms per model call of each variant, interleaved round by round."""
    device = torch.device(DEVICE)
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for patcher in variants.values():
            x, sigma, c = _inputs(_loaded(patcher), size, device)
            for _ in range(3):
                _call(patcher, x, sigma, c)
        for _ in range(rounds):
            for name, patcher in variants.items():
                _loaded(patcher)
                times[name].append(_timed(lambda p=patcher: _call(p, x, sigma, c)))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_mb(patcher, size: int) -> float | None:
    """Peak bytes allocated (MiB) for one step of ``patcher``, from an empty cache (None in a rehearsal)."""
    import comfy.model_management as mm

    if REHEARSE:
        return None
    mm.unload_all_models()
    mm.soft_empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        x, sigma, c = _inputs(_loaded(patcher), size, torch.device("cuda"))
        _call(patcher, x, sigma, c)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def run(name: str, rounds: int, work: Path) -> dict:
    from tests.fixtures.comfy_models import build_unet, tiny_clip_vision

    model = build_unet(name, 0, torch.float32 if REHEARSE else torch.float16)
    ip_file = adapters.adapter_file(work / "models" / "ipadapter", name, model)
    ip = adapters.load(ip_file)
    clip_vision = tiny_clip_vision(work, seed=0)
    image = torch.rand(1, 224, 224, 3, generator=torch.Generator().manual_seed(11))
    one = adapters.apply(model, ip, image, clip_vision, weight=0.8)
    four = one
    for i in range(3):
        four = adapters.apply(four, ip, torch.roll(image, 17 * (i + 1), dims=1), clip_vision, weight=0.5)
    size = LATENT[name]
    times = step_times({"unpatched": model, "one adapter": one}, size, rounds)
    peaks = {"unpatched": peak_mb(model, size), "one": peak_mb(one, size), "four": peak_mb(four, size)}
    base = peaks["unpatched"]
    return {
        "model": name, "latent": size, "rounds": rounds,
        "ms_per_call": times, "ratio_one_adapter": times["one adapter"] / times["unpatched"],
        "peak_mib": {"unpatched": base, "added_by_one": None if base is None else peaks["one"] - base,
                     "added_by_four": None if base is None else peaks["four"] - base},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--sdxl", action="store_true", help="also SDXL at 1024 px")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--rehearse", action="store_true", help="on the CPU, reduced, to check the script")
    args = parser.parse_args(argv)
    if not REHEARSE and not torch.cuda.is_available():
        print("gpu_step: no CUDA device; nothing measured")
        return 0
    from tests.conftest import find_comfyui

    work = Path(tempfile.mkdtemp(prefix="ipas-gpu-step-"))
    harness.boot(find_comfyui(), work / "models")
    harness.load_pack(work)
    names = ["sd15-reduced"] if REHEARSE else ["sd15-full", "sdxl-full"] if args.sdxl else ["sd15-full"]
    results = {"gpu": "rehearsal on the CPU" if REHEARSE else torch.cuda.get_device_name(),
               "torch": torch.__version__, "runs": [run(name, 2 if REHEARSE else args.rounds, work) for name in names]}
    Path(args.json).write_text(json.dumps(results, indent=2))
    for r in results["runs"]:
        print(f"{r['model']}: one adapter {r['ratio_one_adapter']:.3f}x the unpatched call "
              f"({r['ms_per_call']['one adapter']:.2f} vs {r['ms_per_call']['unpatched']:.2f} ms); peak memory "
              f"added (MiB): {r['peak_mib']['added_by_one']} with one adapter, {r['peak_mib']['added_by_four']} "
              "with four")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
