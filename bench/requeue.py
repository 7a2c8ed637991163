"""Re-queue cost: the SD1.5 standard graph run once, then re-queued with only IPAdapterAdvanced's weight changed.

ComfyUI runs in this process (``execution.PromptExecutor`` with its classic cache, as the server uses it), with
the random-weight demo model set (tests/fixtures/demo_models.py: a full-size SD1.5 checkpoint, ViT-H CLIP
vision, ip-adapter_sd15) and the pack loaded as a custom node. Every ``ClipVisionModel.encode_image`` call is
counted, and the nodes each run executed (not served from the cache) are listed. Each measurement is a fresh
process: its first run is the graph's first queue after ComfyUI starts, then re-queues alternate the weight, so
every re-queue re-runs the adapter, the sampler, the decode and the save. First runs are taken with the model
files in the page cache ("warm") and, where root may evict it, read from disk ("cold"). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_COMFYUI, REPO_ROOT, boot_comfyui, load_average, machine
from host_compat import prompt_executor

PACK_LINK = "ipadapter-suite"
CHECKPOINT = "demo_sd15.safetensors"
REFERENCE = "ipadapter_demo_reference.png"


def standard_prompt(size: int, steps: int, weight: float, adapter: bool = True) -> dict:
    """The shipped ipadapter_sd15_standard workflow in API format (demo checkpoint, ``size`` px, ``steps``)."""
    model = ["4", 0] if adapter else ["1", 0]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a cozy reading corner by a "
                                                         "window, soft morning light, high quality, detailed"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, noisy, lowres"}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "seed": 42,
            "steps": steps, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "requeue"}},
    }
    if adapter:
        prompt["2"] = {"class_type": "IPAdapterUnifiedLoader",
                       "inputs": {"model": ["1", 0], "preset": "STANDARD (medium strength)"}}
        prompt["3"] = {"class_type": "LoadImage", "inputs": {"image": REFERENCE}}
        prompt["4"] = {"class_type": "IPAdapterAdvanced", "inputs": {
            "model": ["2", 0], "ipadapter": ["2", 1], "image": ["3", 0], "weight": weight, "weight_type": "linear",
            "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0, "embeds_scaling": "V only"}}
    return prompt


class Events:
    """The executor's ``server``: keeps the events (which nodes ran, which were cached)."""

    client_id = None  # the executor sets it from extra_data["client_id"]
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def send_sync(self, event: str, data: dict, sid=None) -> None:
        self.events.append((event, data))


def repo_helpers():
    """The repo's demo-model generator and server helpers, imported before ComfyUI's root goes on sys.path
    (ComfyUI has a ``tests`` package too); the repo root is removed again so ``nodes`` stays ComfyUI's."""
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from ipadapter_cli import server
        from tests.fixtures import demo_models
    finally:
        sys.path.remove(str(REPO_ROOT))
    return server, demo_models


def boot(comfyui: Path, work: Path, fp16_unet: bool):
    """ComfyUI in CPU mode in this process, demo models registered, the pack loaded as a custom node."""
    server, demo_models = repo_helpers()
    boot_comfyui(comfyui)
    from comfy.cli_args import args

    args.fp16_unet = fp16_unet
    models = demo_models.write_demo_models(demo_models.default_models_dir(), comfyui)
    custom_nodes = work / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    (custom_nodes / PACK_LINK).symlink_to(REPO_ROOT, target_is_directory=True)
    for sub in ("input", "output", "temp"):
        (work / sub).mkdir()
    shutil.copyfile(models["reference_image"], work / "input" / REFERENCE)
    config = work / "extra_model_paths.yaml"
    config.write_text(server.extra_paths_yaml(custom_nodes, Path(models["models_dir"])))

    import folder_paths
    import utils.extra_config

    utils.extra_config.load_extra_path_config(str(config))
    folder_paths.set_input_directory(str(work / "input"))
    folder_paths.set_output_directory(str(work / "output"))
    folder_paths.set_temp_directory(str(work / "temp"))
    import execution

    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    if "IPAdapterAdvanced" not in nodes.NODE_CLASS_MAPPINGS:
        sys.exit("the pack did not load (IPAdapterAdvanced is not registered)")
    return execution


def count_encoder_calls() -> list:
    import comfy.clip_vision

    calls: list = []
    original = comfy.clip_vision.ClipVisionModel.encode_image

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    comfy.clip_vision.ClipVisionModel.encode_image = counted
    return calls


def run(execution, executor, events: Events, prompt: dict, prompt_id: str, calls: list) -> dict:
    ok, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not ok:
        sys.exit(f"prompt rejected: {error} {node_errors}")
    events.events.clear()
    before = len(calls)
    start = time.perf_counter()
    executor.execute(prompt, prompt_id, {"client_id": "bench"}, outputs)  # a client id: node events are sent
    elapsed = time.perf_counter() - start
    if not executor.success:
        sys.exit(f"run {prompt_id} failed: {executor.status_messages[-1:]}")
    ran = [data["node"] for event, data in events.events if event == "executing" and data.get("node")]
    cached = [n for event, data in events.events if event == "execution_cached" for n in data.get("nodes", [])]
    return {"seconds": elapsed, "encoder_calls": len(calls) - before,
            "ran": [f"{n}:{prompt[n]['class_type']}" for n in ran], "cached": sorted(cached, key=int)}


def worker(args) -> dict:
    """One fresh ComfyUI process: the first run of the graph, then ``--requeues`` runs changing only the weight."""
    work = Path(tempfile.mkdtemp(prefix="ipas-requeue-"))
    try:
        execution = boot(args.comfyui, work, fp16_unet=args.fp16_unet)
        calls = count_encoder_calls()
        events = Events()
        executor = prompt_executor(execution, events)
        weights = [0.8] + [0.5 if i % 2 == 0 else 0.8 for i in range(args.requeues)]
        runs = []
        import torch

        with torch.inference_mode():
            for i, weight in enumerate(weights):
                prompt = standard_prompt(args.size, args.steps, weight)
                result = run(execution, executor, events, prompt, f"r{i}", calls)
                result["weight"] = weight
                runs.append(result)
                print(f"  run {i} (weight {weight}): {result['seconds']:.2f} s, encoder calls "
                      f"{result['encoder_calls']}, executed: {' '.join(result['ran'])}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": machine(), "runs": runs}


def drop_page_cache() -> bool:
    """Evict every file from the page cache (root only), so the first run reads the models from disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def spawn(args, cold: bool) -> dict:
    dropped = drop_page_cache() if cold else False
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--size", str(args.size), "--steps",
               str(args.steps), "--requeues", str(args.requeues), "--comfyui", str(args.comfyui)]
    if args.fp16_unet:
        command.append("--fp16-unet")
    print(f"  [{'cold' if cold else 'warm'}] fresh process{' (page cache dropped)' if dropped else ''}",
          file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # progress: on stderr
    if done.returncode:
        sys.exit(f"worker failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["page_cache"] = "dropped" if dropped else ("not dropped (needs root)" if cold else "warm")
    return result


def report(mode: str, processes: list[dict]) -> dict:
    firsts = [p["runs"][0]["seconds"] for p in processes]
    requeues = [r["seconds"] for p in processes for r in p["runs"][1:]]
    calls = sum(r["encoder_calls"] for p in processes for r in p["runs"][1:])
    print(f"  {mode}: page cache {processes[0]['page_cache']}")
    for i, p in enumerate(processes):
        rest = ", ".join(f"{r['seconds']:.2f}" for r in p["runs"][1:])
        print(f"    process {i}: first run {p['runs'][0]['seconds']:7.2f} s (CLIP vision calls "
              f"{p['runs'][0]['encoder_calls']}); re-queues {rest} s; re-ran: {', '.join(p['runs'][-1]['ran'])}")
    ratio = statistics.median(firsts) / statistics.median(requeues)
    print(f"    first / re-queue: {ratio:.2f}x (medians: {statistics.median(firsts):.2f} s / "
          f"{statistics.median(requeues):.2f} s; slowest re-queue {max(requeues):.2f} s); "
          f"CLIP vision calls in {len(requeues)} re-queues: {calls}")
    return {"mode": mode, "ratio": ratio, "first_s": firsts, "requeue_s": requeues, "requeue_encoder_calls": calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image size in px (default 64)")
    parser.add_argument("--steps", type=int, default=2, help="sampler steps (default 2)")
    parser.add_argument("--requeues", type=int, default=4, help="re-queues after each first run (weights alternate)")
    parser.add_argument("--processes", type=int, default=2, help="fresh ComfyUI processes per page-cache state")
    parser.add_argument("--cache", choices=["warm", "cold", "both"], default="both",
                        help="first runs with the model files in the page cache, evicted (root only), or both")
    parser.add_argument("--fp16-unet", action="store_true", help="fp16 UNet storage (ComfyUI's CPU default is fp32)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_COMFYUI)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    load_before = load_average()
    modes = ["warm", "cold"] if args.cache == "both" else [args.cache]
    if "warm" in modes:
        spawn(args, cold=False)  # puts the model files in the page cache (and generates them if missing)
    results = {mode: [spawn(args, cold=mode == "cold") for _ in range(args.processes)] for mode in modes}
    info = next(iter(results.values()))[0]["machine"]
    print()
    print("IPAdapter Suite: re-queue with only IPAdapterAdvanced.weight changed (in-process PromptExecutor)")
    print(f"machine : {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
          f"torch {info['torch']}, ComfyUI {info['comfyui']}")
    print(f"load    : {load_before} before, {load_average()} after (1/5/15-min load average)")
    print(f"graph   : ipadapter_sd15_standard (demo models, {'fp16' if args.fp16_unet else 'fp32'} UNet storage), "
          f"{args.size}x{args.size} px, {args.steps} steps dpmpp_2m, cfg 6.5")
    print(f"method  : each process is a fresh ComfyUI (first run = the graph's first queue after start-up), "
          f"then {args.requeues} re-queues changing only the weight")
    summaries = [report(mode, results[mode]) for mode in modes]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "args": vars(args) | {"json": str(args.json),
                                         "comfyui": str(args.comfyui)}, "summaries": summaries,
                                         "processes": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
