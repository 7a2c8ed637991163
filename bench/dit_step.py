"""Per-step cost the transformer adapters add (XLabs / InstantX Flux, InstantX SD3.5-Large), at real widths.

A full fp32 Flux or SD3.5 step takes many minutes on a CPU, so the step is not run whole. What the adapter
adds to one block call is timed in isolation, variants interleaved round by round, at full width:

* ``ours``   the pack's path: ``DitPatch``'s hooks installed on stand-in modules that carry the hooked names
             but compute nothing (``dit_parts.StandIn*``), so the time is capture + term + weight + injection
             + hook install/remove; the K/V state built by the pack's own ``flux_prompt_kv`` / ``SD3PromptState``;
* ``term``   the core function alone (``prompt_attention_heads``: the SDPA / ``sd3_prompt_kv``), as the hooks
             call it;
* ``naive``  the per-call reference the existing packs follow: K/V projected from the image tokens with the
             adapter's weights inside every block call (SD3.5: the diffusers computation; its packs run the
             resampler once per call, as ours does).

Ours adds into the hooked tensor in place (the run is in inference mode, as ComfyUI samples), so it gets its
own copies of the block tensors; the naive reference only reads them.

The denominators are real ComfyUI blocks (``DoubleStreamBlock``, ``SingleStreamBlock``, MMDiT ``JointBlock``,
seeded weights) run at full size; a step is estimated as the sum of its block forwards. Then the
fixed cost of a model call (``DitPatch.__call__`` with hooks for every block of meta-device full models), the
bytes of each application's state, and (``--model``) one whole reduced-width Flux call through the pack.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import DEFAULT_COMFYUI, boot_comfyui, init_parameters, load_average, load_pack, machine, pin_allocator
from dit_parts import (
    adapter_kinds,
    block_call,
    flux_block,
    hooked_call,
    naive_flux,
    naive_sd3,
    sd3_block,
    stand_in_model,
)
from dit_state import hook_overhead, meta_models, state_bytes
from dit_whole import whole_model_check

FLUX = {"hidden": 3072, "heads": 24, "img": 4096, "txt": 512, "context": 4096, "double": 19, "single": 38}
SD3 = {"hidden": 2432, "heads": 38, "img": 4096, "txt": 154, "tokens": 64, "joint": 38, "features": (729, 1152)}
WEIGHT = 0.8  # not 1, so the weight multiply runs as it does for users


def timed(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1, label: str = "") -> dict:
    """Every variant once per round, order rotated; wall and process-CPU ms per call after the warm-up."""
    names = list(variants)
    out = {"wall": {n: [] for n in names}, "cpu": {n: [] for n in names}}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            wall_ms, cpu_ms = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3
            if r >= warmup:
                out["wall"][name].append(wall_ms)
                out["cpu"][name].append(cpu_ms)
        if label:
            print(f"  {label}: round {r + 1}/{warmup + rounds}{' (warm-up)' if r < warmup else ''}", flush=True)
    return out


def latent_hw(image_tokens: int) -> tuple[int, int]:
    """The latent size whose 2x2 patches give ``image_tokens`` (a square grid)."""
    side = 2 * round(image_tokens**0.5)
    return side, side


def med(samples: dict, name: str, metric: str = "wall") -> float:
    return statistics.median(samples[metric][name])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------------------------------
# Flux: per-block sites
# --------------------------------------------------------------------------------------------------


def flux_sites(pack, kinds: dict, batch: int, rounds: int, g: torch.Generator) -> dict:
    app_mod, hooks = pack.ipadapter_core.dit.application, pack.nodes.dit_hooks
    attention = pack.ipadapter_core.dit.attention
    h, heads, img, txt, ctx = FLUX["hidden"], FLUX["heads"], FLUX["img"], FLUX["txt"], FLUX["context"]
    d = h // heads
    flags = [0] if batch == 1 else [1, 0] * (batch // 2)
    call_args = (torch.empty(batch, 16, *latent_hw(img), device="meta"), flags[:2] if batch > 1 else [0],
                 torch.empty(batch, txt, ctx, device="meta"), 1.0)
    wk, wv = (torch.randn(h, ctx, generator=g) * 0.02 for _ in range(2))
    bk, bv = (torch.randn(h, generator=g) * 0.02 for _ in range(2))
    tokens = {n: (torch.randn(1, n, ctx, generator=g), 0.1 * torch.randn(1, n, ctx, generator=g)) for n in (4, 16, 128)}
    setup_ms: dict[str, float] = {}

    def state(kind, n: int, entries: list[int], bias: bool):
        sd = {}
        for e in entries:
            sd |= {f"{e}.to_k_ip.weight": wk, f"{e}.to_v_ip.weight": wv}
            if bias:
                sd |= {f"{e}.to_k_ip.bias": bk, f"{e}.to_v_ip.bias": bv}
        start = time.perf_counter()
        kv = app_mod.flux_prompt_kv(kind, sd, *tokens[n], entries, heads)
        setup_ms[kind.kind + str(n)] = (time.perf_counter() - start) * 1e3 / len(entries)
        return kv

    def app(kind, st, stream: str, entry: int):
        target = app_mod.Target(stream, 0, entry, WEIGHT)
        return app_mod.DitApplication(kind=kind, label=kind.kind, targets=(target,), state=st, heads=heads)

    dm = stand_in_model(h, heads)
    apps = {"xlabs4": app(kinds["xlabs-v1"], state(kinds["xlabs-v1"], 4, [0], True), "double", 0),
            "xlabs16": app(kinds["xlabs-v2"], state(kinds["xlabs-v2"], 16, [0], True), "double", 0)}
    ix_state = state(kinds["instantx-flux"], 128, [0, 19], False)
    apps["ix-double"] = app(kinds["instantx-flux"], ix_state, "double", 0)
    apps["ix-single"] = app(kinds["instantx-flux"], ix_state, "single", 19)

    def row_kv(a, entry):  # K/V per latent row in the call's order (cond_or_uncond)
        pairs = [a.state.get(entry, negative=f == 1) for f in (flags if batch > 1 else [0])]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def row_tokens(n):
        return torch.cat([tokens[n][1 if f == 1 else 0] for f in (flags if batch > 1 else [0])])

    q_d = torch.randn(batch, heads, img, d, generator=g)
    q_s = torch.randn(batch, heads, img + txt, d, generator=g)
    target_d = torch.randn(batch, img, h, generator=g)  # XLabs: the block's image output; InstantX: attention
    attn_s = torch.randn(batch, img + txt, h, generator=g)  # single block: attention half (naive adds here)
    lin2_in = torch.cat([attn_s, torch.randn(batch, img + txt, 4 * h, generator=g)], dim=-1)
    mine = {"d": target_d.clone(), "s": lin2_in.clone()}  # ours adds into these in place (the hooks' own path)
    small = torch.zeros(1, 1, h)

    variants: dict[str, Callable] = {}
    checks: dict[str, float] = {}
    for site, a in apps.items():
        patch = hooks.DitPatch((a,))
        single = site == "ix-single"
        entry = a.targets[0].entry
        k, v = row_kv(a, entry)
        n = a.kind.tokens
        b_k, b_v = (bk, bv) if site.startswith("xlabs") else (None, None)
        norm_k = site.startswith("ix")
        if single:
            run = hooked_call(pack, patch, dm, [a], call_args, dm.single_blocks[0])
            ours = (lambda run=run: run(q_s, mine["s"]))
            naive = (lambda t=row_tokens(n): naive_flux(q_s, t, wk, None, wv, None, heads, True, attn_s, WEIGHT))
            term = (lambda k=k, v=v: attention.prompt_attention_heads(q_s, k, v))
        else:
            run = hooked_call(pack, patch, dm, [a], call_args, dm.double_blocks[0])
            xlabs = site.startswith("xlabs")
            ours = ((lambda run=run: run(q_d, mine["d"], small)[0]) if xlabs
                    else (lambda run=run: run(q_d, small, mine["d"])[1]))
            naive = (lambda t=row_tokens(n), bk_=b_k, bv_=b_v, nk=norm_k:
                     naive_flux(q_d, t, wk, bk_, wv, bv_, heads, nk, target_d, WEIGHT))
            term = (lambda k=k, v=v: attention.prompt_attention_heads(q_d, k, v))
        with torch.inference_mode():
            mine["d"].copy_(target_d)
            mine["s"].copy_(lin2_in)
            o, r = ours(), naive()
            out_view = o[..., :h] if single else o
            checks[f"{site} ours-naive"] = max_diff(out_view, r)
        for name, fn in (("ours", ours), ("term", term), ("naive", naive)):
            variants[f"{site}/{name}"] = fn

    with torch.inference_mode():
        samples = timed(variants, rounds, label="Flux sites")
    return {"samples": samples, "checks": checks, "setup_ms_per_entry": setup_ms, "batch": batch}


# --------------------------------------------------------------------------------------------------
# SD3.5-Large: per-block site and the resampler
# --------------------------------------------------------------------------------------------------


def sd3_site(pack, kind, batch: int, rounds: int, g: torch.Generator) -> dict:
    app_mod, hooks = pack.ipadapter_core.dit.application, pack.nodes.dit_hooks
    attention = pack.ipadapter_core.dit.attention
    h, heads, img, txt, n = SD3["hidden"], SD3["heads"], SD3["img"], SD3["txt"], SD3["tokens"]
    resampler = kind.build()
    init_parameters(resampler, g)
    names = {"norm_ip.linear.weight": (2 * h, 1280), "norm_ip.linear.bias": (2 * h,), "to_k_ip.weight": (h, h),
             "to_v_ip.weight": (h, h), "norm_q.weight": (64,), "norm_k.weight": (64,), "norm_ip_k.weight": (64,)}
    ip = {f"0.{k}": (torch.randn(s, generator=g) * 0.02 if len(s) == 2 else
                     (torch.zeros(s) if k.endswith("bias") else 1 + 0.1 * torch.randn(s, generator=g)))
          for k, s in names.items()}
    feats = torch.randn(1, *SD3["features"], generator=g)
    state = app_mod.SD3PromptState(resampler, ip, [0], feats, torch.zeros_like(feats), concat=True,
                                   dtype=torch.float32)
    a = app_mod.DitApplication(kind=kind, label="sd3", targets=(app_mod.Target("joint", 0, 0, WEIGHT),),
                               state=state, heads=heads)
    flags = [1, 0] if batch == 2 else [0]
    timestep = 500.0
    with torch.inference_mode():
        toks = {f: state.tokens(f == 1, timestep, torch.device("cpu"), torch.float32) for f in set(flags)}

    def prefill(call):
        for f in set(flags):
            call.sd3_tokens[(id(a), f)] = toks[f]

    dm = stand_in_model(h, heads, joint=1)
    call_args = (torch.empty(batch, 16, *latent_hw(img), device="meta"), flags,
                 torch.empty(batch, txt, 4096, device="meta"), timestep)
    run = hooked_call(pack, hooks.DitPatch((a,)), dm, [a], call_args, dm.joint_blocks[0], prefill)
    qkv_out = torch.randn(batch, img, 3 * h, generator=g)
    attn = torch.randn(batch, img, h, generator=g)
    mine = attn.clone()  # ours adds into it in place; the naive reference reads ``attn``
    q, k, v = qkv_out.reshape(batch, img, 3, heads, -1).permute(2, 0, 3, 1, 4)
    w = state.block(0)

    def kv_only():
        return [attention.sd3_prompt_kv(toks[f][0], toks[f][1], (w["norm_ip_linear_weight"], w["norm_ip_linear_bias"]),
                                        w["to_k_ip_weight"], w["to_v_ip_weight"], w["norm_ip_k_weight"], heads)
                for f in flags]

    def naive():
        return naive_sd3(q, k, v, [toks[f][0] for f in flags], [toks[f][1] for f in flags], w, heads, attn, WEIGHT)

    def resample():
        return [state.tokens(f == 1, timestep, torch.device("cpu"), torch.float32) for f in set(flags)]

    variants = {"sd3/ours": lambda: run(qkv_out, mine), "sd3/term-kv": kv_only, "sd3/naive": naive,
                "sd3/resampler": resample}
    with torch.inference_mode():
        check = max_diff(variants["sd3/ours"](), naive())  # ``mine`` is still a copy of ``attn`` here
        samples = timed(variants, rounds, label="SD3.5 site")
    return {"samples": samples, "checks": {"sd3 ours-naive": check}, "batch": batch, "resampler_calls": len(set(flags)),
            "n_tokens": n}


# --------------------------------------------------------------------------------------------------
# Real block forwards (the denominators)
# --------------------------------------------------------------------------------------------------


def block_forwards(flux_batch: int, sd3_batch: int, rounds: int, g: torch.Generator) -> dict:
    out = {}
    specs = [("flux-double", "double", flux_batch, FLUX), ("flux-single", "single", flux_batch, FLUX),
             ("sd3-joint", "joint", sd3_batch, SD3)]
    for name, kind, batch, spec in specs:
        block = (sd3_block(spec["hidden"], spec["heads"], g) if kind == "joint"
                 else flux_block(kind, spec["hidden"], spec["heads"], g))
        walls, cpus = [], []
        with torch.inference_mode():
            prepare, run = block_call(kind, block, batch, spec["img"] // 4, spec["txt"], spec["hidden"], g)
            prepare()
            run()  # warm-up at a quarter of the image tokens
            prepare, run = block_call(kind, block, batch, spec["img"], spec["txt"], spec["hidden"], g)
            for r in range(rounds):
                prepare()
                start, cpu = time.perf_counter(), time.process_time()
                run()
                walls.append((time.perf_counter() - start) * 1e3)
                cpus.append((time.process_time() - cpu) * 1e3)
                print(f"  {name} forward {r + 1}/{rounds}: {walls[-1]:.0f} ms", flush=True)
        out[name] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "raw": walls, "batch": batch}
        del block, prepare, run
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

SITE_LABELS = {"xlabs4": "XLabs v1, double block, 4 tok", "xlabs16": "XLabs v2, double block, 16 tok",
               "ix-double": "InstantX, double block, 128 tok", "ix-single": "InstantX, single block, 128 tok",
               "sd3": "SD3.5-L, joint block, 64 tok"}


def summarise(r: dict) -> dict:
    """Per-step totals: blocks x per-block time (+ resampler and the per-call wrapper cost)."""
    fs, ss, blocks, over = r["flux"]["samples"], r["sd3"]["samples"], r["blocks"], r["overhead"]
    flux_step = FLUX["double"] * blocks["flux-double"]["wall"] + FLUX["single"] * blocks["flux-single"]["wall"]
    sd3_step = SD3["joint"] * blocks["sd3-joint"]["wall"]
    resampler = med(ss, "sd3/resampler")
    models = {
        "XLabs v1 (4 tok)": (flux_step, [("xlabs4", FLUX["double"])], over["XLabs (19 double)"]["call_ms"], 0.0),
        "XLabs v2 (16 tok)": (flux_step, [("xlabs16", FLUX["double"])], over["XLabs (19 double)"]["call_ms"], 0.0),
        "InstantX Flux (128 tok)": (flux_step, [("ix-double", FLUX["double"]), ("ix-single", FLUX["single"])],
                                    over["InstantX Flux (19 + 38)"]["call_ms"], 0.0),
        "SD3.5-Large (64 tok)": (sd3_step, [("sd3", SD3["joint"])], over["SD3.5-Large (38 joint)"]["call_ms"],
                                 resampler),
    }
    out = {}
    for label, (step, sites, call_ms, extra) in models.items():
        row = {"step_ms": step}
        for variant in ("ours", "naive"):
            total = extra + (call_ms if variant != "naive" else 0.0)
            for site, count in sites:
                samples = ss if site == "sd3" else fs
                name = f"{site}/{variant}"
                if name not in samples["wall"]:
                    total = float("nan")
                    break
                total += count * med(samples, name)
            row[variant] = total
        out[label] = row
    return out


def print_report(r: dict, info: dict, load_before: str, allocator: str) -> None:
    fs, ss, blocks = r["flux"]["samples"], r["sd3"]["samples"], r["blocks"]
    print()
    print("IPAdapter Suite: per-step cost of the transformer adapters (full width, fp32, CPU)")
    print(f"machine : {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), torch "
          f"{info['torch']}, ComfyUI {info['comfyui']} (CPU mode, block attention {info['attention']})")
    print(f"load    : {load_before} before, {load_average()} after (1/5/15-min load average)")
    print(f"malloc  : {allocator}")
    print(f"shapes  : Flux hidden 3072 (24 x 128), {FLUX['img']} image + {FLUX['txt']} text tokens, batch "
          f"{r['flux']['batch']}; SD3.5-Large hidden 2432 (38 x 64), {SD3['img']} image + {SD3['txt']} text tokens, "
          f"batch {r['sd3']['batch']} (cond + uncond); weight {WEIGHT}")
    print(f"method  : per-block variants interleaved, {r['rounds']['flux']} rounds (Flux) / {r['rounds']['sd3']} "
          f"(SD3.5) after 1 warm-up, medians (wall); block forwards: median of {r['rounds']['blocks']}")
    print()
    print("Block forwards (the denominators; ComfyUI's own blocks, seeded weights)")
    for name, b in blocks.items():
        print(f"  {name:<12} batch {b['batch']}: {b['wall']:>9.0f} ms wall, {b['cpu']:>9.0f} ms cpu")
    print()
    print(f"  {'per block call, ms (wall medians)':<36}{'ours':>8}{'term':>8}{'naive':>8}"
          f"{'ours/naive':>11}{'(cpu)':>7}{'ours/block':>11}")
    denominators = {"xlabs4": "flux-double", "xlabs16": "flux-double", "ix-double": "flux-double",
                    "ix-single": "flux-single", "sd3": "sd3-joint"}
    for site, label in SITE_LABELS.items():
        samples = ss if site == "sd3" else fs

        def get(variant, metric="wall", samples=samples, site=site):
            name = f"{site}/{variant}"
            return med(samples, name, metric) if name in samples["wall"] else float("nan")
        ours, naive = get("ours"), get("naive")
        block = blocks[denominators[site]]["wall"]
        print(f"  {label:<36}{ours:>8.1f}{get('term-kv' if site == 'sd3' else 'term'):>8.1f}{naive:>8.1f}"
              f"{ours / naive:>11.2f}{get('ours', 'cpu') / get('naive', 'cpu'):>7.2f}"
              f"{100 * ours / block:>10.2f}%")
    print("  (Flux 'term' = the SDPA alone; SD3.5 'term' = sd3_prompt_kv for both chunks only)")
    print(f"  SD3.5 resampler, once per model call ({r['sd3']['resampler_calls']} chunk(s)): "
          f"{med(ss, 'sd3/resampler'):.1f} ms")
    print("  checks, max |diff|: " + ", ".join(f"{k} {v:.2g}" for k, v in {**r["flux"]["checks"],
                                                                          **r["sd3"]["checks"]}.items()))
    print()
    print("Per model call (DitPatch.__call__ with an empty model: sigma, hooks installed and removed, report)")
    for label, o in r["overhead"].items():
        print(f"  {label:<26} {o['targets']:>3} blocks, {o['hooks']:>3} hooks: install+remove "
              f"{o['install_remove_ms']:.3f} ms, whole wrapper {o['call_ms']:.3f} ms")
    print()
    print("Whole step (blocks x per-block time; step = sum of the block forwards; + resampler and wrapper)")
    print(f"  {'adapter':<26}{'step s':>9}{'ours s':>9}{'% step':>8}{'naive s':>9}{'% step':>8}{'ours/naive':>11}")
    for label, row in r["summary"].items():
        step = row["step_ms"]
        print(f"  {label:<26}{step / 1e3:>9.1f}{row['ours'] / 1e3:>9.2f}{100 * row['ours'] / step:>7.2f}%"
              f"{row['naive'] / 1e3:>9.2f}{100 * row['naive'] / step:>7.2f}%{row['ours'] / row['naive']:>11.2f}")
    setup = r["flux"]["setup_ms_per_entry"]
    print("  once per application (not per step), K/V of every block: "
          f"XLabs {FLUX['double'] * setup['xlabs_flux4'] / 1e3:.2f} s, "
          f"InstantX {(FLUX['double'] + FLUX['single']) * setup['instantx_flux128'] / 1e3:.2f} s (pos + neg)")
    print()
    print("State per application (1 reference image, positive + negative)")
    for label, row in r["memory"].items():
        extra = (f"; the K/V weights a per-call pack keeps resident instead: {row['kv_weights_bf16'] / 2**20:.0f} MiB "
                 "bf16" if "kv_weights_bf16" in row else
                 f" (resampler {row['resampler_float32'] / 2**20:.0f} / {row['resampler_bfloat16'] / 2**20:.0f} MiB)")
        print(f"  {label:<26} fp32 {row['float32'] / 2**20:>8.1f} MiB, bf16 {row['bfloat16'] / 2**20:>8.1f} MiB{extra}")
    if r.get("whole"):
        w = r["whole"]
        print()
        print(f"Whole reduced Flux call through the pack ({w['shape']}; {w['rounds']} rounds after 1 warm-up)")
        print(f"  without adapter: {w['base_ms']:.1f} ms (max - min over the rounds: {w['base_spread_ms']:.1f} ms)")
        for label, a in w["adapters"].items():
            print(f"  {label:<20} {a['call_ms']:>8.1f} ms: added {a['added_ms']:>6.1f} ms (median of per-round "
                  f"differences; {a['added_min_ms']:.1f} min to min), expected {a['expected_ms']:>5.1f} ms (the same "
                  f"wrapper around stand-in blocks); output changed by {a['output_changed_by']:.3g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of the Flux per-block variants")
    parser.add_argument("--sd3-rounds", type=int, default=2, help="timed rounds of the SD3.5 per-block variants")
    parser.add_argument("--block-rounds", type=int, default=1, help="timed forwards of each real block")
    parser.add_argument("--image-tokens", type=int, default=4096,
                        help="image tokens of every shape (a square; 4096 = a 1024x1024 image; fewer for a smoke run)")
    parser.add_argument("--flux-batch", type=int, choices=[1, 2], default=1, help="2: cond + uncond (true CFG)")
    parser.add_argument("--sd3-batch", type=int, choices=[1, 2], default=2)
    parser.add_argument("--model", action="store_true", help="also the whole reduced-width Flux call")
    parser.add_argument("--model-rounds", type=int, default=12)
    parser.add_argument("--overhead-iterations", type=int, default=50)
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--native-malloc", action="store_true", help="glibc's default allocator thresholds")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default, one per core; 1 keeps small ops sane when other "
                        "processes share the cores)")
    args = parser.parse_args(argv)
    allocator = pin_allocator(args.native_malloc)
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = load_average()
    boot_comfyui(args.comfyui)
    pack = load_pack()
    g = torch.Generator().manual_seed(args.seed)
    kinds = adapter_kinds(pack)
    FLUX["img"] = SD3["img"] = args.image_tokens
    r: dict = {"rounds": {"flux": args.rounds, "sd3": args.sd3_rounds, "blocks": args.block_rounds}}
    print("Flux per-block sites (full width)", flush=True)
    r["flux"] = flux_sites(pack, kinds, args.flux_batch, args.rounds, g)
    print("SD3.5-Large per-block site and resampler (full width)", flush=True)
    r["sd3"] = sd3_site(pack, kinds["instantx-sd3"], args.sd3_batch, args.sd3_rounds, g)
    print("Real block forwards", flush=True)
    r["blocks"] = block_forwards(args.flux_batch, args.sd3_batch, args.block_rounds, g)
    print("Per-call wrapper cost and state sizes (meta-device full models)", flush=True)
    r["overhead"] = hook_overhead(pack, kinds, meta_models(), args.overhead_iterations)
    r["memory"] = state_bytes(pack, kinds)
    if args.model:
        print("Whole reduced-width Flux call", flush=True)
        r["whole"] = whole_model_check(pack, args.model_rounds, WEIGHT, args.seed)
    r["summary"] = summarise(r)
    info = machine()
    print_report(r, info, load_before, allocator)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": r}, indent=2, default=str) + "\n",
                             encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
