"""attn2 time inside real UNet steps: what one adapter adds where it really runs, ours vs the naive reference.

``patch_sites.py`` times every site in isolation, each variant right after eleven others, so a site's q and
output are always read back from memory. In a real step they were computed a moment before the attn2 call. This
script runs whole fp32 batch-2 forwards of ComfyUI's full-size SD1.5 UNet (random weights, 512 px) and times
only the attn2 calls inside them: every site's replacement is wrapped in a timer, and so is the host attention
each replacement calls for the text tokens. Variants (one forward each, order rotated per round): ``host`` (the
unpatched site), ``ours`` and ``naive`` for 4 and 16 image tokens (the callables of patch_sites.py). "added" is
the median over rounds of a variant's attn2 time beyond its own text-attention calls (the host attention moves
by several ms between identical calls, more than an adapter adds, so it is taken out per call); "vs host" is
the plain per-round difference to the host variant. The step is the median unpatched forward.
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
from common import (
    DEFAULT_COMFYUI,
    Timed,
    boot_comfyui,
    init_parameters,
    load_average,
    load_pack,
    machine,
    pin_allocator,
    time_text_attention,
)
from patch_sites import (
    COND_OR_UNCOND,
    FAMILIES,
    TEXT_TOKENS,
    incumbent_add,
    make_tokens,
    make_weights,
    meta_patcher,
    model_config,
    naive,
    ours,
)

TOKENS = {"4": 4, "16": 16}


def variants(pack, family: str, generator: torch.Generator) -> dict[str, dict[tuple, Callable]]:
    patcher = meta_patcher(family)
    sites = pack.nodes.host.model_sites(patcher)
    weights = make_weights(pack, sites, FAMILIES[family]["context"], generator)
    host = pack.nodes.host
    out: dict[str, dict[tuple, Callable]] = {
        "host": {s.key: (lambda q, k, v, e: host.comfy_attention(q, k, v, e["n_heads"], e)) for s in sites}}
    for name, count in TOKENS.items():
        tokens = make_tokens(weights, FAMILIES[family]["context"], count, generator)
        out[f"ours-{name}"] = ours(pack, patcher, sites, family, [tokens])
        out[f"naive-{name}"] = naive(pack, sites, [tokens], incumbent_add(host))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one forward per variant each)")
    parser.add_argument("--native-malloc", action="store_true", help="glibc's default allocator thresholds")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    allocator = pin_allocator(args.native_malloc)
    load_before = load_average()
    boot_comfyui(args.comfyui)
    pack = load_pack()
    generator = torch.Generator().manual_seed(args.seed)
    family = "sd15"
    spec = FAMILIES[family]
    patches = variants(pack, family, generator)

    model = model_config(family).get_model({})
    init_parameters(model.diffusion_model, generator)
    unet = model.diffusion_model.eval().requires_grad_(False)
    latent = spec["size"] // 8
    x = torch.randn(2, 4, latent, latent, generator=generator)
    context = torch.randn(2, TEXT_TOKENS, spec["context"], generator=generator)
    spent = {name: [0.0] for name in patches}
    text_spent = {name: [0.0] for name in patches}
    for name, table in patches.items():
        if name != "host":
            time_text_attention(table, text_spent[name])
    options = {name: {"patches_replace": {"attn2": {key: Timed(fn, spent[name]) for key, fn in table.items()}}}
               for name, table in patches.items()}
    attn2: dict[str, list[float]] = {name: [] for name in patches}
    own: dict[str, list[float]] = {name: [] for name in patches}  # attn2 time minus the variant's text attention
    step: dict[str, list[float]] = {name: [] for name in patches}
    names = list(patches)
    with torch.inference_mode():
        for r in range(args.rounds + 1):
            for name in names[r % len(names):] + names[:r % len(names)]:
                spent[name][0] = text_spent[name][0] = 0.0
                extra = {**options[name], "cond_or_uncond": list(COND_OR_UNCOND), "sigmas": torch.tensor([4.0])}
                start = time.perf_counter()
                unet(x, torch.full((2,), 500.0), context, transformer_options=extra)
                elapsed = (time.perf_counter() - start) * 1000.0
                beyond = (spent[name][0] - text_spent[name][0]) * 1000.0 if name != "host" else 0.0
                print(f"  round {r}{' (warm-up)' if not r else ''} {name}: step {elapsed:.0f} ms, attn2 "
                      f"{spent[name][0] * 1000:.1f} ms, beyond the text attention {beyond:.1f} ms", flush=True)
                if r:
                    attn2[name].append(spent[name][0] * 1000.0)
                    own[name].append(beyond)
                    step[name].append(elapsed)

    host_step = statistics.median(step["host"])
    added = {n: statistics.median(own[n]) for n in names}
    vs_host = {n: statistics.median(a - h for a, h in zip(attn2[n], attn2["host"], strict=True)) for n in names}
    info = machine()
    print()
    print("IPAdapter Suite: attn2 time inside real UNet steps (SD1.5 at 512 px, batch 2, fp32, CPU)")
    print(f"machine : {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
          f"torch {info['torch']}, ComfyUI {info['comfyui']}, attention {info['attention']}")
    print(f"load    : {load_before} before, {load_average()} after (1/5/15-min load average)")
    print(f"malloc  : {allocator}")
    print(f"method  : {args.rounds} rounds after 1 warm-up, one forward per variant per round (order rotated); "
          "added = median over rounds of the variant's attn2 time beyond its own text-attention calls; vs host = "
          "median of (variant - host) attn2 sums (the host attention's spread included)")
    print(f"  unpatched step (host variant's forwards): median {host_step:.0f} ms")
    print(f"  {'variant':<10} {'attn2 ms':>9} {'added ms':>9} {'% step':>8} {'vs host':>9} {'step ms':>9}")
    for n in names:
        print(f"  {n:<10} {statistics.median(attn2[n]):9.2f} {added[n]:9.2f} {100 * added[n] / host_step:7.3f}% "
              f"{vs_host[n]:9.2f} {statistics.median(step[n]):9.0f}")
    for name in TOKENS:
        o, n = f"ours-{name}", f"naive-{name}"
        print(f"  ours / naive added time, {name:>2} tok: {added[o] / added[n]:.3f} (vs host: "
              f"{vs_host[o] / vs_host[n]:.3f})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "attn2_ms": attn2, "beyond_text_ms": own, "step_ms": step,
                                         "added_ms": added, "vs_host_ms": vs_host}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
