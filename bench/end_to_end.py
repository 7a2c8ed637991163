"""End to end: the SD1.5 standard workflow in a real ComfyUI server on CPU, with and without the adapter.

Starts ``main.py --cpu`` (ipadapter_cli.server.ComfyServer, the pack loaded as a custom node) with the
random-weight demo model set, warms both graphs up once (loading every model), then runs interleaved rounds
of the graph with the adapter (LoadImage -> IPAdapterUnifiedLoader -> IPAdapterAdvanced -> KSampler) and the
same graph with the adapter nodes removed (the KSampler's model wired straight from the checkpoint). Each
timed run changes the seed only, so what runs is the sampler, the decode and the save: the time of a run is
the sampling time plus the same decode/save in both. Times are the server's own execution_start ->
execution_success timestamps. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_COMFYUI, load_average
from requeue import REFERENCE, repo_helpers, standard_prompt


def server_seconds(entry: dict) -> float:
    """execution_start -> execution_success of a history entry, from the server's millisecond timestamps."""
    stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image size in px (default 256, the demo's)")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps (default 4, the demo's)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of (with, without) after the warm-up")
    parser.add_argument("--fp16-unet", action="store_true", help="fp16 UNet storage (ComfyUI's CPU default is fp32)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    args = parser.parse_args(argv)

    server_module, demo_models = repo_helpers()
    load_before = load_average()
    models = demo_models.write_demo_models(demo_models.default_models_dir(), args.comfyui)
    work = Path(tempfile.mkdtemp(prefix="ipas-e2e-"))
    extra = ("--fp16-unet",) if args.fp16_unet else ()
    server = server_module.ComfyServer(args.comfyui, work, models["models_dir"], extra_args=extra)
    samples: dict[str, list[float]] = {"with adapter": [], "without adapter": []}
    try:
        started = time.monotonic()
        server.start()
        print(f"  server up in {time.monotonic() - started:.1f} s on {server.url}", flush=True)
        shutil.copyfile(models["reference_image"], server.input_dir / REFERENCE)
        stats = server.client.get_json("/system_stats")
        for r in range(args.rounds + 1):
            for label, adapter in (("with adapter", True), ("without adapter", False)):
                prompt = standard_prompt(args.size, args.steps, 0.8, adapter=adapter)
                prompt["8"]["inputs"]["seed"] = 1000 + r
                entry = server.client.run(prompt, timeout=3600)
                seconds = server_seconds(entry)
                print(f"  round {r}{' (warm-up: loads the models)' if r == 0 else ''} {label}: {seconds:.2f} s",
                      flush=True)
                if r:
                    samples[label].append(seconds)
    except Exception as exc:
        print(f"end_to_end failed: {exc}\n--- server log (tail) ---\n{server.tail(40)}", file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    with_s, without_s = samples["with adapter"], samples["without adapter"]
    added = statistics.median(w - o for w, o in zip(with_s, without_s, strict=True))
    system = stats.get("system", {})
    print()
    print("IPAdapter Suite: end to end, SD1.5 standard workflow in a real ComfyUI server (CPU)")
    print(f"server  : ComfyUI {system.get('comfyui_version', '?')}, python {system.get('python_version', '?')}, "
          f"torch {system.get('pytorch_version', '?')}, --cpu {' '.join(extra)}")
    print(f"load    : {load_before} before, {load_average()} after (1/5/15-min load average)")
    print(f"graph   : demo models, {args.size}x{args.size} px, {args.steps} steps dpmpp_2m cfg 6.5; each timed run "
          "changes only the seed (sampler + decode + save run)")
    for label, values in samples.items():
        print(f"  {label:<16}: median {statistics.median(values):8.2f} s  (runs: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    print(f"  with / without    : {statistics.median(with_s) / statistics.median(without_s):.3f}; added "
          f"{added:.2f} s per run ({100 * added / statistics.median(without_s):.2f}%, median of per-round differences)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "system": stats,
                                         "seconds": samples}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
