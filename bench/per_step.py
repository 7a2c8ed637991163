"""Per-step cost of IP-Adapter patches on a full-size SD1.5 UNet, on CPU.

Builds ComfyUI's own SD1.5 UNet (real widths and depth, random fp32 weights) in-process and times
``diffusion_model(x, t, context, transformer_options=...)`` with a batch of 2 (uncond + cond) for:

* ``none``        no adapter (the unpatched step);
* ``basic``       the pack's patch with one basic adapter (4 image tokens);
* ``plus``        the pack's patch with one plus-style adapter (16 image tokens);
* ``naive-basic`` a reference patch defined here that re-projects K/V from the image tokens on
                  every call, as the incumbent pack does.

Variants run interleaved in rounds (none, basic, plus, naive-basic, none, ...) after one warm-up
round; medians are reported, and "added" times are medians of per-round differences to ``none``.
A second, much less noisy measurement times only the attn2 patches, on q/k/v captured from one
real step. Usage and the meaning of the numbers: bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ipadapter_suite"
DEFAULT_COMFYUI = Path(os.environ.get("COMFYUI_ROOT", Path.home() / "ComfyUI"))

# What ComfyUI's model detection derives from a real SD1.5 checkpoint (SD15 adds heads 8 / head channels -1).
SD15_UNET_CONFIG: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
CONTEXT_DIM = 768
CLIP_EMBED_DIM = 1024  # ViT-H/14 image_embeds (basic adapters)
CLIP_HIDDEN_DIM = 1280  # ViT-H/14 penultimate hidden states (plus adapters)
CLIP_HIDDEN_TOKENS = 257
COND_OR_UNCOND = [1, 0]  # uncond first, as ComfyUI's sampler ordered it in the host spec's runs


# --------------------------------------------------------------------------------------------------
# Setup: ComfyUI, the pack, the UNet, the adapters
# --------------------------------------------------------------------------------------------------


def boot_comfyui(root: Path) -> None:
    """Make ComfyUI importable in CPU mode (root first on sys.path, args.cpu before model_management)."""
    root = root.resolve()
    if not (root / "comfy" / "model_management.py").is_file():
        sys.exit(f"ComfyUI not found at {root} (set --comfyui or COMFYUI_ROOT)")
    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True
    args.disable_api_nodes = True
    import comfy.model_management as mm

    if mm.cpu_state != mm.CPUState.CPU:
        sys.exit("comfy.model_management was imported before args.cpu was set")
    import folder_paths  # noqa: F401  (the pack's host layer imports it)
    import utils.extra_config  # noqa: F401  (ComfyUI's `utils` package, before anything imports its nodes.py)


def load_pack() -> ModuleType:
    """Import the repo as the package ``ipadapter_suite`` (its modules use relative imports)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load the pack from {REPO_ROOT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def init_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every parameter a defined value: normal(0.02) for >=2-D, ones for 1-D weights, zeros for biases.

    ComfyUI's ops skip initialisation, so without this the UNet holds whatever memory it was given.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.dim() >= 2:
                param.normal_(0.0, 0.02, generator=generator)
            else:
                param.fill_(1.0)


def build_sd15_unet(generator: torch.Generator):
    """ComfyUI's SD1.5 model (fp32, CPU) with random weights, wrapped in a ModelPatcher."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(SD15_UNET_CONFIG)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_parameters(model.diffusion_model, generator)
    model.diffusion_model.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def random_adapter_weights(pack: ModuleType, sites: list, projection: torch.nn.Module,
                           generator: torch.Generator):
    """An adapter file's two sections: ``projection``'s parameters and one K/V pair per model site."""
    init_parameters(projection, generator)
    numbering = pack.ipadapter_core.sites.ip_numbering(sites)
    ip_adapter: dict[str, torch.Tensor] = {}
    for site in sites:
        n = numbering[site.key]
        for name in ("to_k_ip", "to_v_ip"):
            weight = torch.empty(site.inner_dim, CONTEXT_DIM)
            ip_adapter[f"{n}.{name}.weight"] = weight.normal_(0.0, 0.02, generator=generator)
    image_proj = {k: v.detach().clone() for k, v in projection.state_dict().items()}
    return pack.ipadapter_core.loading.AdapterWeights(image_proj=image_proj, ip_adapter=ip_adapter, path="")


@dataclass
class Adapter:
    """A random adapter, its model object, and the image tokens for one reference image (and its negative)."""

    name: str
    model: Any  # ipadapter_core.adapter.IPAdapterModel
    cond: torch.Tensor  # [1, T, 768]
    uncond: torch.Tensor


def make_adapters(pack: ModuleType, sites: list, generator: torch.Generator) -> dict[str, Adapter]:
    core = pack.ipadapter_core
    projection = core.projection
    basic_proj = projection.ImageProjModel(CLIP_EMBED_DIM, CONTEXT_DIM, 4)
    plus_proj = projection.Resampler(
        dim=CONTEXT_DIM, depth=4, dim_head=64, heads=12, num_queries=16, embedding_dim=CLIP_HIDDEN_DIM,
        output_dim=CONTEXT_DIM, ff_mult=4,
    )
    adapters: dict[str, Adapter] = {}
    specs = (
        ("basic", basic_proj, (1, CLIP_EMBED_DIM)),
        ("plus", plus_proj, (1, CLIP_HIDDEN_TOKENS, CLIP_HIDDEN_DIM)),
    )
    for name, module, embeds_shape in specs:
        weights = random_adapter_weights(pack, sites, module, generator)
        model = core.adapter.IPAdapterModel(weights, name=f"random-{name}")
        embeds = torch.randn(embeds_shape, generator=generator)
        adapters[name] = Adapter(name, model, model.project(embeds), model.project(torch.zeros_like(embeds)))
    return adapters


# --------------------------------------------------------------------------------------------------
# The naive reference patch (benchmark only)
# --------------------------------------------------------------------------------------------------


class NaivePatch:
    """attn2 replacement that projects the image tokens through to_k_ip/to_v_ip on every call.

    This is what the incumbent pack does per site and per step; the pack itself projects once per
    application and only re-assembles the rows for a new batch layout.
    """

    def __init__(self, wk: torch.Tensor, wv: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 weight: float, attention: Callable) -> None:
        self.wk, self.wv = wk, wv
        self.cond, self.uncond = cond, uncond
        self.weight = weight
        self.attention = attention

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
        out = self.attention(q, k, v, extra["n_heads"], extra)
        cond_or_uncond = extra["cond_or_uncond"]
        per_chunk = q.shape[0] // len(cond_or_uncond)
        dtype = q.dtype
        k_cond = torch.nn.functional.linear(self.cond.to(dtype), self.wk).repeat(per_chunk, 1, 1)
        v_cond = torch.nn.functional.linear(self.cond.to(dtype), self.wv).repeat(per_chunk, 1, 1)
        k_uncond = torch.nn.functional.linear(self.uncond.to(dtype), self.wk).repeat(per_chunk, 1, 1)
        v_uncond = torch.nn.functional.linear(self.uncond.to(dtype), self.wv).repeat(per_chunk, 1, 1)
        ip_k = torch.cat([(k_cond, k_uncond)[c] for c in cond_or_uncond])
        ip_v = torch.cat([(v_cond, v_uncond)[c] for c in cond_or_uncond])
        return (out + self.attention(q, ip_k, ip_v, extra["n_heads"], extra) * self.weight).to(dtype)

    def __deepcopy__(self, memo: dict) -> NaivePatch:
        return self


# --------------------------------------------------------------------------------------------------
# Variants and timing
# --------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    key: str
    label: str
    transformer_options: dict  # the patched clone's model_options["transformer_options"]
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # process CPU time, all threads: robust to other load


def ours(pack: ModuleType, base, sites: list, adapter: Adapter) -> dict:
    """A clone patched through the pack's own path: resolve -> build_application -> patch_model."""
    core, host = pack.ipadapter_core, pack.nodes.host
    weights = core.weighting.resolve("linear", 1.0, sites, "sd15")
    application = core.adapter.build_application(adapter.model, sites, adapter.cond, adapter.uncond, weights)
    clone = base.clone()
    host.patch_model(clone, application)
    return clone.model_options["transformer_options"]


def naive(pack: ModuleType, base, sites: list, adapter: Adapter) -> dict:
    """A clone patched with NaivePatch at every site (same weights, same tokens)."""
    numbering = pack.ipadapter_core.sites.ip_numbering(sites)
    clone = base.clone()
    for site in sites:
        wk, wv = adapter.model.kv_weights(numbering[site.key])
        patch = NaivePatch(wk, wv, adapter.cond, adapter.uncond, 1.0, pack.nodes.host.comfy_attention)
        clone.set_model_attn2_replace(patch, *site.key)
    return clone.model_options["transformer_options"]


@dataclass
class StepInputs:
    x: torch.Tensor
    timesteps: torch.Tensor
    context: torch.Tensor
    sigmas: torch.Tensor


def step_inputs(size: int, generator: torch.Generator) -> StepInputs:
    latent = size // 8
    batch = len(COND_OR_UNCOND)
    return StepInputs(
        x=torch.randn(batch, 4, latent, latent, generator=generator),
        timesteps=torch.full((batch,), 500.0),
        context=torch.randn(batch, 77, CONTEXT_DIM, generator=generator),
        sigmas=torch.tensor([4.0]),  # one latent: sigmas has the latent batch size, not len(cond_or_uncond)
    )


def call_options(model_options: dict, inputs: StepInputs) -> dict:
    """A fresh per-call transformer_options, as ComfyUI's sampler builds it (the UNet mutates it)."""
    options = dict(model_options)
    options["cond_or_uncond"] = list(COND_OR_UNCOND)
    options["sigmas"] = inputs.sigmas
    return options


def unet_step(unet: torch.nn.Module, variant: Variant, inputs: StepInputs) -> tuple[float, float, torch.Tensor]:
    """One forward pass: (wall ms, process CPU ms, output)."""
    options = call_options(variant.transformer_options, inputs)
    wall, cpu = time.perf_counter(), time.process_time()
    out = unet(inputs.x, inputs.timesteps, inputs.context, transformer_options=options)
    return (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0, out


def bench_steps(unet: torch.nn.Module, variants: list[Variant], inputs: StepInputs, rounds: int) -> None:
    """One warm-up round, then ``rounds`` interleaved rounds; fills each variant's wall/CPU samples."""
    reference: torch.Tensor | None = None
    for r in range(rounds + 1):
        for variant in variants:
            wall, cpu, out = unet_step(unet, variant, inputs)
            if r == 0:
                if not torch.isfinite(out).all():
                    sys.exit(f"{variant.key}: the UNet output is not finite; the timing would be meaningless")
                if reference is None:
                    reference = out
                diff = (out - reference).abs().max()
                print(f"  warm-up {variant.key:<12} {wall:9.1f} ms  (|out - none| max {diff:.3g})", flush=True)
            else:
                variant.wall_ms.append(wall)
                variant.cpu_ms.append(cpu)
        if r:
            line = "  ".join(f"{v.key} {v.wall_ms[-1]:.0f}/{v.cpu_ms[-1]:.0f}" for v in variants)
            print(f"  round {r}/{rounds} (wall/cpu ms): {line}", flush=True)


class Recorder:
    """attn2 replacement that stores each site's q/k/v and extra_options, then runs the plain attention."""

    def __init__(self, key: tuple, attention: Callable, store: dict) -> None:
        self.key, self.attention, self.store = key, attention, store

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
        self.store[self.key] = (q.clone(), k.clone(), v.clone(), dict(extra))
        return self.attention(q, k, v, extra["n_heads"], extra)


def capture_sites(pack: ModuleType, base, sites: list, inputs: StepInputs) -> dict:
    store: dict = {}
    clone = base.clone()
    for site in sites:
        clone.set_model_attn2_replace(Recorder(site.key, pack.nodes.host.comfy_attention, store), *site.key)
    options = call_options(clone.model_options["transformer_options"], inputs)
    pack.nodes.host.unet_of(clone)(inputs.x, inputs.timesteps, inputs.context, transformer_options=options)
    return store


Samples = dict[str, dict[str, list[float]]]  # metric ("wall" | "cpu") -> variant -> one value per round


def bench_patches(pack: ModuleType, captured: dict, patched: dict[str, dict], rounds: int) -> Samples:
    """Per round: the summed time over all sites of each attn2 callable, interleaved site by site.

    ``base`` is the host's plain attention (what an unpatched site runs); the others are the
    replacement patches the variants registered.
    """
    attention = pack.nodes.host.comfy_attention
    plain = lambda q, k, v, e: attention(q, k, v, e["n_heads"], e)
    callables: dict[str, dict[tuple, Callable]] = {"base": dict.fromkeys(captured, plain)}
    for name, options in patched.items():
        callables[name] = dict(options["patches_replace"]["attn2"])
    samples: Samples = {"wall": {name: [] for name in callables}, "cpu": {name: [] for name in callables}}
    for r in range(rounds + 1):
        wall_sums, cpu_sums = dict.fromkeys(callables, 0.0), dict.fromkeys(callables, 0.0)
        for key, (q, k, v, extra) in captured.items():
            for name, per_site in callables.items():
                fn = per_site[key]
                wall, cpu = time.perf_counter(), time.process_time()
                fn(q, k, v, extra)
                wall_sums[name] += (time.perf_counter() - wall) * 1000.0
                cpu_sums[name] += (time.process_time() - cpu) * 1000.0
        if r:  # round 0 warms up (and lets the pack assemble its per-layout K/V once)
            for name in callables:
                samples["wall"][name].append(wall_sums[name])
                samples["cpu"][name].append(cpu_sums[name])
    return samples


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import comfy.ldm.modules.attention as comfy_attention

    try:
        import comfyui_version

        comfy_version = comfyui_version.__version__
    except ImportError:
        comfy_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "comfyui": comfy_version,
        "attention": comfy_attention.optimized_attention.__name__,
    }


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def summarise(samples: dict[str, list[float]], baseline_key: str, step_ms: float | None = None) -> dict[str, dict]:
    """Median, range, ratio to the baseline, and added time (median of per-round differences).

    ``added_pct`` is relative to ``step_ms`` (the unpatched step) if given, else to the baseline.
    """
    baseline = samples[baseline_key]
    base_median = statistics.median(baseline)
    reference = step_ms if step_ms is not None else base_median
    out: dict[str, dict] = {}
    for key, values in samples.items():
        added = statistics.median(v - b for v, b in zip(values, baseline, strict=True))
        out[key] = {
            "median_ms": statistics.median(values),
            "min_ms": min(values),
            "max_ms": max(values),
            "vs_baseline": statistics.median(values) / base_median,
            "added_ms": added,
            "added_pct": 100.0 * added / reference,
        }
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and a >= 0 else f"n/a ({a:.1f} vs {b:.1f} ms)"


def print_report(info: dict, setup: dict, steps: dict, patches: dict, labels: dict[str, str]) -> None:
    print()
    print("IPAdapter Suite: per-step cost of the attn2 patches")
    print(f"machine : {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
          f"torch {info['torch']}, python {info['python']}")
    print(f"load    : {setup['load_before']} before, {setup['load_after']} after (1/5/15-min load average)")
    print(f"host    : ComfyUI {info['comfyui']}, CPU mode, attention {info['attention']}")
    print(f"model   : SD1.5 UNet, {setup['params_m']:.1f}M params fp32, {setup['sites']} attn2 sites, "
          f"batch 2 (cond_or_uncond {COND_OR_UNCOND}), latent {setup['latent']}x{setup['latent']} "
          f"({setup['size']} px)")
    print(f"method  : medians of {setup['rounds']} interleaved rounds after 1 warm-up; "
          "added = median of per-round (variant - none); wall = elapsed, cpu = process CPU time")
    print()
    print("Whole UNet step (ms per step)")
    print(f"  {'variant':<25}{'wall':>9}{'min':>9}{'max':>9}{'x none':>8}{'added':>9}{'added%':>8}"
          f"  |{'cpu':>9}{'x none':>8}{'added':>9}{'added%':>8}")
    for key in steps["wall"]:
        w, c = steps["wall"][key], steps["cpu"][key]
        print(f"  {labels[key]:<25}{w['median_ms']:>9.0f}{w['min_ms']:>9.0f}{w['max_ms']:>9.0f}"
              f"{w['vs_baseline']:>8.3f}{w['added_ms']:>9.1f}{w['added_pct']:>7.2f}%"
              f"  |{c['median_ms']:>9.0f}{c['vs_baseline']:>8.3f}{c['added_ms']:>9.1f}{c['added_pct']:>7.2f}%")
    for metric in ("wall", "cpu"):
        s = steps[metric]
        value = ratio(s["basic"]["added_ms"], s["naive-basic"]["added_ms"])
        print(f"  ours / naive added time, basic ({metric}): {value}")
    print()
    print(f"attn2 calls only: {setup['sites']} sites, q/k/v captured from one step, summed over sites, "
          f"{setup['patch_rounds']} rounds")
    print(f"  {'callable':<28}{'wall':>9}{'min':>9}{'added':>9}{'% step':>8}  |{'cpu':>9}{'added':>9}{'% step':>8}")
    for key in patches["wall"]:
        w, c = patches["wall"][key], patches["cpu"][key]
        print(f"  {labels[key]:<28}{w['median_ms']:>9.2f}{w['min_ms']:>9.2f}{w['added_ms']:>9.2f}"
              f"{w['added_pct']:>7.2f}%  |{c['median_ms']:>9.2f}{c['added_ms']:>9.2f}{c['added_pct']:>7.2f}%")
    for kind in ("basic", "plus"):
        line = ", ".join(
            f"{metric} {ratio(patches[metric][kind]['added_ms'], patches[metric]['naive-' + kind]['added_ms'])}"
            for metric in ("wall", "cpu")
        )
        print(f"  ours / naive added time, {kind}: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image size in px (latent = size/8); default 512")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of whole steps (plus 1 warm-up)")
    parser.add_argument("--patch-rounds", type=int, default=30, help="timed rounds of the attn2-only measurement")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results to this JSON file")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI, help="ComfyUI checkout (default ~/ComfyUI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size % 64 or args.size < 64:
        parser.error("--size must be a positive multiple of 64 (the UNet downsamples the latent 3 times)")
    if args.rounds < 1 or args.patch_rounds < 1:
        parser.error("--rounds and --patch-rounds must be at least 1")

    load_before = load_average()
    boot_comfyui(args.comfyui)
    pack = load_pack()
    generator = torch.Generator().manual_seed(args.seed)

    with torch.inference_mode():
        t0 = time.perf_counter()
        base = build_sd15_unet(generator)
        unet = pack.nodes.host.unet_of(base)
        sites = pack.nodes.host.model_sites(base)
        params = sum(p.numel() for p in unet.parameters())
        adapters = make_adapters(pack, sites, generator)
        print(f"built the UNet ({params / 1e6:.1f}M params, {len(sites)} sites) and adapters "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)

        labels = {
            "none": "none (unpatched)",
            "basic": "basic, 4 tok (ours)",
            "plus": "plus, 16 tok (ours)",
            "naive-basic": "basic, naive reference",
            "naive-plus": "plus, naive reference",
            "base": "plain attention (unpatched)",
        }
        patched = {
            "basic": ours(pack, base, sites, adapters["basic"]),
            "plus": ours(pack, base, sites, adapters["plus"]),
            "naive-basic": naive(pack, base, sites, adapters["basic"]),
            "naive-plus": naive(pack, base, sites, adapters["plus"]),
        }
        inputs = step_inputs(args.size, generator)
        variants = [Variant("none", labels["none"], base.model_options["transformer_options"])]
        variants += [Variant(k, labels[k], patched[k]) for k in ("basic", "plus", "naive-basic")]

        print(f"whole steps at {args.size} px: 1 warm-up + {args.rounds} rounds of {len(variants)} variants",
              flush=True)
        bench_steps(unet, variants, inputs, args.rounds)
        step_samples: Samples = {"wall": {v.key: v.wall_ms for v in variants},
                                 "cpu": {v.key: v.cpu_ms for v in variants}}
        steps = {metric: summarise(per_variant, "none") for metric, per_variant in step_samples.items()}

        print(f"attn2 calls only: 1 warm-up + {args.patch_rounds} rounds", flush=True)
        captured = capture_sites(pack, base, sites, inputs)
        patch_samples = bench_patches(pack, captured, patched, args.patch_rounds)
        patches = {metric: summarise(per_variant, "base", steps[metric]["none"]["median_ms"])
                   for metric, per_variant in patch_samples.items()}

    info = machine()
    setup = {
        "size": args.size, "latent": args.size // 8, "rounds": args.rounds, "patch_rounds": args.patch_rounds,
        "params_m": params / 1e6, "sites": len(sites), "seed": args.seed,
        "load_before": load_before, "load_after": load_average(),
    }
    print_report(info, setup, steps, patches, labels)
    if args.json is not None:
        result = {
            "machine": info,
            "setup": setup,
            "labels": labels,
            "steps": steps,
            "steps_raw_ms": step_samples,
            "attn2_only": patches,
            "attn2_only_raw_ms": patch_samples,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
