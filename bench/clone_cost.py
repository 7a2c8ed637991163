"""Clone cost: bytes allocated by ``ModelPatcher.clone()`` after applying 1 and 4 adapters.

``clone()`` deep-copies ``model_options`` (comfyui-host.md §1.6), and every node downstream of an adapter
(a second adapter, LoRA loaders, RescaleCFG ...) clones. The SD1.5 UNet's sites (16) are taken from a
full-size UNet built on the meta device; adapters have real-size, random SD1.5 basic weights
(to_k_ip/to_v_ip for every site, plus the 3072x1024 projection).

* ``ours``: the pack's real path (build_application + patch_model), with the per-layout K/V assembled once as
  the first sampling step does;
* ``incumbent-style``: a patch object per site without ``__deepcopy__`` that holds the adapter module (the
  projection and every site's K/V weights, shared by the 16 sites of one application) and the image
  tokens, as the incumbent's Attn2Replace/IPAdapter does.

Measured around ``model.clone()`` (and ``copy.deepcopy(model.model_options)``): bytes handed out by torch's
CPU allocator (torch.profiler memory events), Python heap bytes still allocated afterwards (tracemalloc), and
time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import torch
from common import DEFAULT_COMFYUI, boot_comfyui, load_average, load_pack, machine
from patch_sites import Tokens, make_tokens, make_weights, meta_patcher
from torch.profiler import ProfilerActivity, profile

CONTEXT = 768


class IncumbentStylePatch:
    """One site's replacement holding, per stacked adapter, the whole adapter module and the tokens (a second
    adapter adds its entry to the site's patch, as the incumbent's ``Attn2Replace.add``); no ``__deepcopy__``."""

    def __init__(self, entries: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor, int]]) -> None:
        self.entries = entries

    def __call__(self, q, k, v, extra):
        return q


def adapter_module(weights, generator: torch.Generator) -> torch.nn.Module:
    """The incumbent's IPAdapter module: image_proj (Linear 1024 -> 4*768, LayerNorm) and every site's K/V."""
    module = torch.nn.Module()
    module.image_proj = torch.nn.Sequential(torch.nn.Linear(1024, 4 * CONTEXT), torch.nn.LayerNorm(CONTEXT))
    module.ip_layers = torch.nn.ParameterDict(
        {k.replace(".", "_"): torch.nn.Parameter(v, requires_grad=False) for k, v in weights.ip_adapter.items()})
    for p in module.image_proj.parameters():
        p.requires_grad_(False).normal_(0.0, 0.02, generator=generator)
    return module


def apply_ours(pack, base, sites: list, tokens: list[Tokens]):
    core, host = pack.ipadapter_core, pack.nodes.host
    model = base
    for t in tokens:
        model = model.clone()
        weights = core.weighting.resolve("linear", 0.8, sites, "sd15")
        host.patch_model(model, core.adapter.build_application(t.adapter, sites, t.cond, t.uncond, weights))
    rows = core.attention.RowLayout(1)
    table = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    for patch in table.values():  # what the first sampling step does: one assembled layout per site
        for app in patch.applications:
            for kv in app.sites.values():
                kv.assembled((1, 0), rows, torch.device("cpu"), torch.float32)
    return model


def apply_incumbent(pack, base, sites: list, tokens: list[Tokens], generator: torch.Generator):
    numbering = pack.ipadapter_core.sites.ip_numbering(sites)
    model = base
    for t in tokens:
        model = model.clone()
        module = adapter_module(t.adapter.weights, generator)
        table = model.model_options["transformer_options"].get("patches_replace", {}).get("attn2", {})
        for site in sites:
            previous = table[site.key].entries if site.key in table else []
            entry = (module, t.cond, t.uncond, numbering[site.key])
            model.set_model_attn2_replace(IncumbentStylePatch([*previous, entry]), *site.key)
    return model


def patch_bytes(model) -> int:
    """Distinct tensor storage reachable from the attn2 patches (what a deep copy would duplicate)."""
    seen: dict[int, int] = {}

    def visit(obj, depth: int = 0) -> None:
        if depth > 16:
            return
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, torch.nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                visit(t, depth + 1)
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            visit(vars(obj), depth + 1)

    visit(model.model_options["transformer_options"].get("patches_replace", {}))
    return sum(seen.values())


def measure(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Torch allocator bytes, Python heap bytes kept, and wall ms of ``fn`` (medians over ``repeats``)."""
    torch_bytes, py_bytes, ms = [], [], []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            kept = fn()
        torch_bytes.append(sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0))
        del kept
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = fn()
        py_bytes.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        del kept
        start = time.perf_counter()
        kept = fn()
        ms.append((time.perf_counter() - start) * 1000.0)
        del kept
    return {"torch_bytes": statistics.median(torch_bytes), "python_bytes": statistics.median(py_bytes),
            "ms": statistics.median(ms)}


def mb(n: float) -> str:
    return f"{n / 1e6:10.3f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    load_before = load_average()
    boot_comfyui(args.comfyui)
    pack = load_pack()
    generator = torch.Generator().manual_seed(args.seed)
    base = meta_patcher("sd15")
    sites = pack.nodes.host.model_sites(base)
    weights = [make_weights(pack, sites, CONTEXT, generator) for _ in range(4)]
    tokens = [make_tokens(w, CONTEXT, 4, generator) for w in weights]
    models = {"unpatched": base}
    with torch.inference_mode():
        for n in (1, 4):
            models[f"ours, {n} adapter{'s' * (n > 1)}"] = apply_ours(pack, base, sites, tokens[:n])
            models[f"incumbent-style, {n} adapter{'s' * (n > 1)}"] = apply_incumbent(pack, base, sites, tokens[:n],
                                                                                     generator)
        results = {}
        for label, model in models.items():
            results[label] = {
                "patch_bytes": patch_bytes(model),
                "clone": measure(model.clone, args.repeats),
                "deepcopy": measure(lambda m=model: copy.deepcopy(m.model_options), args.repeats),
            }
            print(f"  measured {label}", flush=True)

    info = machine()
    print()
    print("IPAdapter Suite: cost of ModelPatcher.clone() with adapters applied (SD1.5, 16 sites, basic adapters)")
    print(f"machine : {info['cpu']}, {info['cores']} cores, torch {info['torch']}, ComfyUI {info['comfyui']}")
    print(f"load    : {load_before} before, {load_average()} after")
    print(f"method  : medians of {args.repeats}; torch = bytes from torch's CPU allocator during the call "
          "(profiler memory events), python = tracemalloc bytes kept")
    print(f"  {'model':<30}{'patch tensors':>16}  | {'clone(): torch':>16}{'python':>14}{'ms':>9}"
          f"  | {'deepcopy(options): torch':>24}{'ms':>9}")
    for label, r in results.items():
        c, d = r["clone"], r["deepcopy"]
        print(f"  {label:<30}{mb(r['patch_bytes']):>16}  | {mb(c['torch_bytes']):>16}{mb(c['python_bytes']):>14}"
              f"{c['ms']:>9.2f}  | {mb(d['torch_bytes']):>24}{d['ms']:>9.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
