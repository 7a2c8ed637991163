"""Site-level micro-benchmark: what the attn2 patch adds at every cross-attention site of one UNet step.

For every attn2 site of SD1.5 at 512x512 (16 sites) and SDXL at 1024x1024 (70 sites), with the real
shapes (batch 2, cond_or_uncond [1, 0], 77 text tokens), this times, interleaved site by site:

* ``host``        the unpatched site: ``comfy_attention`` (ComfyUI's ``optimized_attention``);
* ``ours-4/16/257`` the pack's ``CrossAttentionPatch`` with one adapter of 4 (basic), 16 (plus) or
                  257 (full face) image tokens, built by ``build_application`` + ``patch_model``;
* ``ours-4+16``   two adapters stacked (basic and plus);
* ``naive-*``     a reference kept in this file: K/V projected from the image tokens on every call, and
                  the image attention through the host's ``optimized_attention``, as the incumbent does;
* ``naive-sdpa-*`` the same per-call projection, but the image part through the same kernel as ours
                  (few-token products up to 16 tokens, else the host's SDPA wrapper), so the share of the
                  K/V cache alone is visible.

Sums over the sites give one UNet step's attn2 cost; "added" is (variant - host), the median over rounds
of the per-round difference, shown in ms and as a % of a measured unpatched UNet step. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import (
    DEFAULT_COMFYUI,
    SD15_UNET_CONFIG,
    SDXL_UNET_CONFIG,
    boot_comfyui,
    init_parameters,
    load_average,
    load_pack,
    machine,
    pin_allocator,
    time_text_attention,
)

FAMILIES: dict[str, dict[str, Any]] = {
    "sd15": {"label": "SD1.5", "config": SD15_UNET_CONFIG, "size": 512, "context": 768, "adm": None},
    "sdxl": {"label": "SDXL", "config": SDXL_UNET_CONFIG, "size": 1024, "context": 2048, "adm": 2816},
}
TEXT_TOKENS = 77
COND_OR_UNCOND = [1, 0]
TOKEN_COUNTS = {"4": 4, "16": 16, "257": 257}  # basic, plus, full face
STACK = ("4", "16")


# --------------------------------------------------------------------------------------------------
# Models (meta device for the site list, real for the step) and adapters
# --------------------------------------------------------------------------------------------------


def model_config(family: str):
    import comfy.supported_models

    cls = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[family]
    config = cls(dict(FAMILIES[family]["config"]))
    config.set_inference_dtype(torch.float32, None)
    return config


def meta_patcher(family: str):
    """The full-size UNet on the meta device (no memory), wrapped so the pack can list and patch its sites."""
    import comfy.model_patcher

    with torch.device("meta"):
        model = model_config(family).get_model({})
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@dataclass
class KVAdapter:
    """What ``build_application`` reads from an adapter: its K/V weights per file number (no projection:
    the image tokens are given directly, as the projection never runs per step)."""

    name: str
    weights: Any  # ipadapter_core.loading.AdapterWeights
    kind: Any

    def kv_weights(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ia = self.weights.ip_adapter
        return ia[f"{n}.to_k_ip.weight"], ia[f"{n}.to_v_ip.weight"]


@dataclass
class Tokens:
    adapter: KVAdapter
    cond: torch.Tensor  # [1, T, context]
    uncond: torch.Tensor


def make_weights(pack, sites: list, context: int, generator: torch.Generator):
    """One adapter file's K/V section for these sites (shared by every token count: values do not change
    the time, and a fp32 SDXL section is 1.3 GB)."""
    numbering = pack.ipadapter_core.sites.ip_numbering(sites)
    ip_adapter: dict[str, torch.Tensor] = {}
    for site in sites:
        for name in ("to_k_ip", "to_v_ip"):
            weight = torch.empty(site.inner_dim, context).normal_(0.0, 0.02, generator=generator)
            ip_adapter[f"{numbering[site.key]}.{name}.weight"] = weight
    return pack.ipadapter_core.loading.AdapterWeights(image_proj={}, ip_adapter=ip_adapter, path="")


def make_tokens(weights, context: int, count: int, generator: torch.Generator) -> Tokens:
    kind = type("Kind", (), {"label": f"random {count}-token"})()
    adapter = KVAdapter(f"random-{count}", weights, kind)
    cond = torch.randn(1, count, context, generator=generator)
    return Tokens(adapter, cond, torch.randn(1, count, context, generator=generator) * 0.1)


def ours(pack, patcher, sites: list, family: str, tokens: list[Tokens]) -> dict[tuple, Callable]:
    """Each site's replacement after the pack's real path: resolve -> build_application -> patch_model."""
    core, host = pack.ipadapter_core, pack.nodes.host
    model = patcher.clone()
    for t in tokens:
        weights = core.weighting.resolve("linear", 0.8, sites, family)
        application = core.adapter.build_application(t.adapter, sites, t.cond, t.uncond, weights)
        host.patch_model(model, application)
    table = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    return {site.key: table[site.key] for site in sites}


ImageAdd = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict, float], torch.Tensor]


class NaivePatch:
    """attn2 replacement doing the incumbent's per-call work (its ``Attn2Replace`` + ``ipadapter_attention``):
    the sigma read back to the host, To_K/To_V (``nn.Linear`` modules) on cond and uncond, ``.repeat`` per
    latent, ``cat`` in cond_or_uncond order, for any number of stacked adapters;
    ``add_image(out, q, ip_k, ip_v, extra, weight)`` adds the image part."""

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor, Tokens]], weight: float,
                 text_attention: Callable, add_image: ImageAdd) -> None:
        self.kv = [(_linear(wk), _linear(wv), tokens) for wk, wv, tokens in kv]
        self.weight = weight
        self.text_attention, self.add_image = text_attention, add_image

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
        out = self.text_attention(q, k, v, extra["n_heads"], extra)
        sigma = extra["sigmas"].detach().cpu()[0].item() if "sigmas" in extra else 999999999.9
        cou = extra["cond_or_uncond"]
        per_chunk = q.shape[0] // len(cou)
        for to_k, to_v, tokens in self.kv:
            if not 0.0 <= sigma <= 999999999.9:  # the incumbent's window check (always true here)
                continue
            cond, uncond = tokens.cond, tokens.uncond
            k_cond = to_k(cond).repeat(per_chunk, 1, 1)
            k_uncond = to_k(uncond).repeat(per_chunk, 1, 1)
            v_cond = to_v(cond).repeat(per_chunk, 1, 1)
            v_uncond = to_v(uncond).repeat(per_chunk, 1, 1)
            ip_k = torch.cat([(k_cond, k_uncond)[c] for c in cou])
            ip_v = torch.cat([(v_cond, v_uncond)[c] for c in cou])
            out = self.add_image(out, q, ip_k, ip_v, extra, self.weight)
        return out.to(q.dtype)


def _linear(weight: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    layer.weight = torch.nn.Parameter(weight, requires_grad=False)
    return layer


def incumbent_add(host) -> ImageAdd:
    """``out + (optimized_attention(q, K', V') * w).to(dtype)``: the host's configured attention, a fresh sum."""
    return lambda out, q, k, v, extra, w: out + (host.comfy_attention(q, k, v, extra["n_heads"], extra) * w).to(q.dtype)


def pack_add(pack) -> ImageAdd:
    """The pack's kernel choice for the image part (few-token products or the host's SDPA wrapper)."""
    host, few = pack.nodes.host, pack.ipadapter_core.few_token_attention

    def add(out, q, k, v, extra, w):
        heads = extra["n_heads"]
        if host.few_token_path(q, extra, heads, k.shape[1]):
            return few.add_attention_(out, q, *few.split_heads(k, v, heads), w)
        return out + host.image_attention(q, k, v, heads, extra) * w

    return add


def naive(pack, sites: list, tokens: list[Tokens], add_image: ImageAdd) -> dict[tuple, Callable]:
    numbering = pack.ipadapter_core.sites.ip_numbering(sites)
    out: dict[tuple, Callable] = {}
    for site in sites:
        kv = [(*t.adapter.kv_weights(numbering[site.key]), t) for t in tokens]
        out[site.key] = NaivePatch(kv, 0.8, pack.nodes.host.comfy_attention, add_image)
    return out


# --------------------------------------------------------------------------------------------------
# Site inputs and timing
# --------------------------------------------------------------------------------------------------


def site_token_counts(family: str) -> dict[tuple, int]:
    """Image-token count (h*w of the latent at that level) of each site, from the UNet's downsampling."""
    size = FAMILIES[family]["size"] // 8
    config = FAMILIES[family]["config"]
    levels = len(config["channel_mult"])
    counts: dict[tuple, int] = {}
    # input_blocks: 0 is the stem; each level has num_res_blocks blocks then (except the last) a downsample.
    index, ds = 1, 1
    for level in range(levels):
        for _ in range(config["num_res_blocks"][level]):
            counts[("input", index)] = (size // ds) ** 2
            index += 1
        if level != levels - 1:
            index += 1
            ds *= 2
    counts[("middle", 0)] = (size // ds) ** 2
    index = 0
    for level in reversed(range(levels)):
        for _ in range(config["num_res_blocks"][level] + 1):
            counts[("output", index)] = (size // ds) ** 2
            index += 1
        ds //= 2 if level else 1
    return counts


@dataclass
class SiteInput:
    key: tuple
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    extra: dict


def site_inputs(family: str, sites: list, generator: torch.Generator) -> list[SiteInput]:
    """q [2, N, inner], k/v [2, 77, inner] per site; tensors are shared between sites of the same shape."""
    counts = site_token_counts(family)
    size = FAMILIES[family]["size"] // 8
    shared: dict[tuple, tuple[torch.Tensor, ...]] = {}
    out: list[SiteInput] = []
    batch = len(COND_OR_UNCOND)
    sigmas = torch.tensor([4.0])
    for site in sites:
        n = counts[site.key[:2]]
        shape = (n, site.inner_dim)
        if shape not in shared:
            shared[shape] = (
                torch.randn(batch, n, site.inner_dim, generator=generator),
                torch.randn(batch, TEXT_TOKENS, site.inner_dim, generator=generator),
                torch.randn(batch, TEXT_TOKENS, site.inner_dim, generator=generator),
            )
        side = int(round(n**0.5))
        extra = {
            "n_heads": site.heads, "dim_head": site.inner_dim // site.heads, "cond_or_uncond": list(COND_OR_UNCOND),
            "sigmas": sigmas, "original_shape": [batch, 4, size, size], "activations_shape": [batch, 1, side, side],
            "block": site.key[:2], "block_index": site.key[2], "transformer_index": site.transformer_index,
            "attn_precision": None,
        }
        out.append(SiteInput(site.key, *shared[shape], extra))
    return out


Samples = dict[str, dict[str, list[float]]]  # metric -> variant -> per-round sum over the sites (ms)


def bench_sites(inputs: list[SiteInput], callables: dict[str, dict[tuple, Callable]], rounds: int,
                progress: str) -> Samples:
    """Per round and variant, the summed wall and CPU ms, and "beyond": the wall ms spent beyond the variant's
    own text-attention calls (the host attention's spread between identical calls is taken out per call)."""
    text = {name: [0.0] for name in callables}
    for name, table in callables.items():
        if name != "host":
            time_text_attention(table, text[name])
    samples: Samples = {metric: {name: [] for name in callables} for metric in ("wall", "cpu", "beyond")}
    for r in range(rounds + 1):
        wall_sums, cpu_sums = dict.fromkeys(callables, 0.0), dict.fromkeys(callables, 0.0)
        for spent in text.values():
            spent[0] = 0.0
        names = list(callables)
        order = names[r % len(names):] + names[:r % len(names)]  # rotated each round: no variant always runs first
        for site in inputs:
            for name in order:
                fn = callables[name][site.key]
                extra = dict(site.extra)
                wall, cpu = time.perf_counter(), time.process_time()
                fn(site.q, site.k, site.v, extra)
                wall_sums[name] += (time.perf_counter() - wall) * 1000.0
                cpu_sums[name] += (time.process_time() - cpu) * 1000.0
        if r:  # round 0 warms up (and lets the pack assemble its per-layout K/V once)
            for name in callables:
                samples["wall"][name].append(wall_sums[name])
                samples["cpu"][name].append(cpu_sums[name])
                samples["beyond"][name].append(wall_sums[name] - text[name][0] * 1000.0 if name != "host" else 0.0)
        print(f"  {progress} round {r}/{rounds}{' (warm-up)' if not r else ''}: host "
              f"{wall_sums['host']:.0f} ms, ours-4 {wall_sums['ours-4']:.0f} ms", flush=True)
    return samples


def check_equal_outputs(inputs: list[SiteInput], callables: dict[str, dict[tuple, Callable]]) -> float:
    """Largest |ours - naive-sdpa| over the sites for one adapter (they compute the same thing)."""
    worst = 0.0
    for site in inputs:
        a = callables["ours-4"][site.key](site.q, site.k, site.v, dict(site.extra))
        b = callables["naive-sdpa-4"][site.key](site.q, site.k, site.v, dict(site.extra))
        worst = max(worst, float((a - b).abs().max()))
    return worst


# --------------------------------------------------------------------------------------------------
# The unpatched UNet step
# --------------------------------------------------------------------------------------------------


def unet_flops(family: str) -> float:
    """FLOPs of one batch-2 UNet forward (meta device, torch's FLOP counter; attention counted as SDPA)."""
    from comfy.ldm.modules.attention import attention_pytorch
    from torch.utils.flop_counter import FlopCounterMode

    spec = FAMILIES[family]
    with torch.device("meta"):
        unet = model_config(family).get_model({}).diffusion_model
    latent = spec["size"] // 8
    x = torch.empty(2, 4, latent, latent, device="meta")
    extra = {"y": torch.empty(2, spec["adm"], device="meta")} if spec["adm"] else {}
    options = {"cond_or_uncond": list(COND_OR_UNCOND),
               "optimized_attention_override": lambda fn, *a, **kw: attention_pytorch(*a, **kw)}
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        unet(x, torch.empty(2, device="meta"), torch.empty(2, TEXT_TOKENS, spec["context"], device="meta"),
             transformer_options=options, **extra)
    return float(counter.get_total_flops())


def measure_step(family: str, rounds: int, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """Wall and process-CPU ms of ``rounds`` unpatched batch-2 UNet forwards (after one warm-up), fp32 on the CPU."""
    import comfy.model_patcher

    spec = FAMILIES[family]
    model = model_config(family).get_model({})
    init_parameters(model.diffusion_model, generator)
    unet = model.diffusion_model.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    latent = spec["size"] // 8
    x = torch.randn(2, 4, latent, latent, generator=generator)
    context = torch.randn(2, TEXT_TOKENS, spec["context"], generator=generator)
    extra = {"y": torch.randn(2, spec["adm"], generator=generator)} if spec["adm"] else {}
    times: list[float] = []
    cpu_times: list[float] = []
    with torch.inference_mode():
        for r in range(rounds + 1):
            options = {**patcher.model_options["transformer_options"], "cond_or_uncond": list(COND_OR_UNCOND),
                       "sigmas": torch.tensor([4.0])}
            start, cpu_start = time.perf_counter(), time.process_time()
            unet(x, torch.full((2,), 500.0), context, transformer_options=options, **extra)
            elapsed = (time.perf_counter() - start) * 1000.0
            cpu_elapsed = (time.process_time() - cpu_start) * 1000.0
            print(f"  {spec['label']} UNet step {r}/{rounds}{' (warm-up)' if not r else ''}: {elapsed:.0f} ms",
                  flush=True)
            if r:
                times.append(elapsed)
                cpu_times.append(cpu_elapsed)
    del patcher, model, unet
    return times, cpu_times


def available_gb() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

LABELS = {
    "host": "host attention (unpatched)",
    "ours-4": "ours, basic 4 tok",
    "ours-16": "ours, plus 16 tok",
    "ours-257": "ours, full face 257 tok",
    "ours-4+16": "ours, 2 stacked (4+16)",
    "naive-4": "naive, basic 4 tok",
    "naive-16": "naive, plus 16 tok",
    "naive-257": "naive, full face 257 tok",
    "naive-4+16": "naive, 2 stacked (4+16)",
    "naive-sdpa-4": "naive K/V + our kernel, 4 tok",
    "naive-sdpa-16": "naive K/V + our kernel, 16",
    "naive-sdpa-257": "naive K/V + our kernel, 257",
}


def summarise(samples: dict[str, list[float]], step_ms: float) -> dict[str, dict[str, float]]:
    base = samples["host"]
    out = {}
    for name, values in samples.items():
        added = statistics.median(v - b for v, b in zip(values, base, strict=True))
        out[name] = {"median_ms": statistics.median(values), "min_ms": min(values), "added_ms": added,
                     "added_pct_of_step": 100.0 * added / step_ms}
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b > 0 and a >= 0 else f"n/a ({a:.2f} vs {b:.2f} ms)"


def print_family(result: dict) -> None:
    step = result["step"]
    print()
    print(f"{result['label']} at {result['size']} px: {result['sites']} attn2 sites, batch 2 "
          f"(cond_or_uncond {COND_OR_UNCOND}), {result['rounds']} interleaved rounds after 1 warm-up")
    print(f"  unpatched UNet step: {step['ms']:.0f} ms wall, {step['cpu_ms']:.0f} ms cpu ({step['how']})")
    print(f"  {'variant':<32}{'wall':>10}{'min':>10}{'added':>10}{'% step':>9}  |{'cpu':>10}{'added':>10}"
          f"{'% step':>9}")
    for name in result["wall"]:
        w, c = result["wall"][name], result["cpu"][name]
        print(f"  {LABELS[name]:<32}{w['median_ms']:>10.2f}{w['min_ms']:>10.2f}{w['added_ms']:>10.2f}"
              f"{w['added_pct_of_step']:>8.3f}%  |{c['median_ms']:>10.2f}{c['added_ms']:>10.2f}"
              f"{c['added_pct_of_step']:>8.3f}%")
    beyond = result["beyond"]
    print("  beyond the text attention (wall ms per step, median; each variant's own host-attention calls taken "
          "out):")
    print("    " + ", ".join(f"{name} {statistics.median(v):.2f}" for name, v in beyond.items() if name != "host"))
    for tok in (*TOKEN_COUNTS, "4+16"):
        ours_b, naive_b = statistics.median(beyond[f"ours-{tok}"]), statistics.median(beyond[f"naive-{tok}"])
        print(f"    ours / naive, {tok:>5} tok: {ratio(ours_b, naive_b)}")
    for tok in (*TOKEN_COUNTS, "4+16"):
        parts = []
        for metric in ("wall", "cpu"):
            s = result[metric]
            added = s[f"ours-{tok}"]["added_ms"]
            line = f"{metric} {ratio(added, s[f'naive-{tok}']['added_ms'])}"
            if f"naive-sdpa-{tok}" in s:
                line += f" (vs naive K/V + our kernel {ratio(added, s[f'naive-sdpa-{tok}']['added_ms'])})"
            parts.append(line)
        print(f"  ours / naive added time, {tok:>5} tok: " + ", ".join(parts))
    print(f"  check: max |ours - naive K/V + our kernel| over the sites (4 tok) = {result['max_abs_diff']:.3g}")


def run_family(pack, family: str, args, generator: torch.Generator, sd15_step: dict | None) -> dict:
    spec = FAMILIES[family]
    patcher = meta_patcher(family)
    sites = pack.nodes.host.model_sites(patcher)
    print(f"{spec['label']}: {len(sites)} sites; building adapters and patches", flush=True)
    weights = make_weights(pack, sites, spec["context"], generator)
    tokens = {name: make_tokens(weights, spec["context"], count, generator) for name, count in TOKEN_COUNTS.items()}
    host = pack.nodes.host
    plain = {s.key: (lambda q, k, v, e: host.comfy_attention(q, k, v, e["n_heads"], e)) for s in sites}
    callables: dict[str, dict[tuple, Callable]] = {"host": plain}
    for name, t in tokens.items():
        callables[f"ours-{name}"] = ours(pack, patcher, sites, family, [t])
    callables["ours-4+16"] = ours(pack, patcher, sites, family, [tokens[n] for n in STACK])
    for name, t in tokens.items():
        callables[f"naive-{name}"] = naive(pack, sites, [t], incumbent_add(host))
    callables["naive-4+16"] = naive(pack, sites, [tokens[n] for n in STACK], incumbent_add(host))
    for name, t in tokens.items():
        callables[f"naive-sdpa-{name}"] = naive(pack, sites, [t], pack_add(pack))
    inputs = site_inputs(family, sites, generator)
    rounds = args.rounds if family == "sd15" else args.sdxl_rounds

    with torch.inference_mode():
        max_diff = check_equal_outputs(inputs, callables)
        samples = bench_sites(inputs, callables, rounds, spec["label"])
        step = step_for(family, args, generator, sd15_step)
    result = {"family": family, "label": spec["label"], "size": spec["size"], "sites": len(sites),
              "rounds": rounds, "step": step, "max_abs_diff": max_diff, "raw_ms": samples}
    for metric, step_key in (("wall", "ms"), ("cpu", "cpu_ms")):
        result[metric] = summarise(samples[metric], step[step_key])  # % of the step in the same metric
    result["beyond"] = samples["beyond"]
    return result


def step_for(family: str, args, generator: torch.Generator, sd15_step: dict | None) -> dict:
    """The unpatched step: measured, or (SDXL without the memory for it) scaled from SD1.5 by FLOPs."""
    mode = args.sd15_step if family == "sd15" else args.sdxl_step
    if family == "sdxl" and mode == "auto":
        mode = "measure" if available_gb() >= 14.0 else "estimate"
    if mode == "estimate" and family == "sdxl" and sd15_step is not None and sd15_step.get("measured"):
        factor = unet_flops("sdxl") / unet_flops("sd15")
        ms, cpu_ms = sd15_step["ms"] * factor, sd15_step["cpu_ms"] * factor
        how = (f"estimated: measured SD1.5 step x {factor:.2f}, the FLOP ratio SDXL@1024 / SD1.5@512 of one "
               f"batch-2 forward (torch FLOP counter); {available_gb():.1f} GB free, a fp32 SDXL UNet needs ~11")
        return {"ms": ms, "cpu_ms": cpu_ms, "how": how, "measured": False, "flop_factor": factor}
    if mode in ("measure", "auto"):
        times, cpu_times = measure_step(family, args.step_rounds, generator)
        return {"ms": statistics.median(times), "cpu_ms": statistics.median(cpu_times), "raw_ms": times,
                "raw_cpu_ms": cpu_times, "measured": True,
                "how": f"measured: median of {len(times)} fp32 forwards after 1 warm-up"}
    raise SystemExit(f"cannot get the {family} step with --{family}-step {mode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd15", "sdxl", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds over the SD1.5 sites")
    parser.add_argument("--sdxl-rounds", type=int, default=4, help="timed rounds over the SDXL sites")
    parser.add_argument("--step-rounds", type=int, default=3, help="timed unpatched UNet steps (after 1 warm-up)")
    parser.add_argument("--sd15-step", choices=["measure"], default="measure")
    parser.add_argument("--sdxl-step", choices=["auto", "measure", "estimate"], default="auto",
                        help="auto: measure if >= 14 GB are free, else scale the SD1.5 step by FLOPs")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--native-malloc", action="store_true", help="glibc's default allocator thresholds")
    args = parser.parse_args(argv)
    allocator = pin_allocator(args.native_malloc)

    load_before = load_average()
    boot_comfyui(args.comfyui)
    pack = load_pack()
    generator = torch.Generator().manual_seed(args.seed)
    families = ["sd15", "sdxl"] if args.family == "both" else [args.family]
    if "sdxl" in families and "sd15" not in families and args.sdxl_step != "measure":
        families.insert(0, "sd15")  # the SDXL estimate scales the measured SD1.5 step
    results = []
    sd15_step = None
    for family in families:
        result = run_family(pack, family, args, generator, sd15_step)
        if family == "sd15":
            sd15_step = result["step"]
        results.append(result)

    info = machine()
    print()
    print("IPAdapter Suite: attn2 site micro-benchmark (sum over the sites of one UNet step)")
    print(f"machine : {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
          f"torch {info['torch']}, python {info['python']}")
    print(f"load    : {load_before} before, {load_average()} after (1/5/15-min load average)")
    print(f"host    : ComfyUI {info['comfyui']}, CPU mode, attention {info['attention']}; "
          "ours adds <= 16 image tokens by few_token_attention, more by the host's SDPA wrapper (CPU fp32)")
    print(f"malloc  : {allocator}")
    print("method  : every site timed in turn for every variant, per round; added = median over rounds of "
          "(variant - host); wall = elapsed, cpu = process CPU time")
    for result in results:
        print_family(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
