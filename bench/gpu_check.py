"""The GPU check's checks (issue 15), run one by one, with one summary: ``summary.json`` and ``summary.md``.

Called by ``scripts/gpu_check.sh OUT`` once the machine is set up. Each check is a separate process (the
host's flags differ between them) with its own time limit, so one hang or crash costs only its own line.
``--rehearse`` runs every check in its CPU form (reduced models), to find a broken check before GPU time
is spent on it; its summary says so and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-p", "tests.host.pytest_plugin", "-q", "-rs", "-p", "no:cacheprovider"]


def checks(rehearse: bool) -> list[tuple[str, list[str], dict[str, str], int]]:
    """(name, command, environment, time limit in s) of every check, cheapest first."""
    cuda = {"IPAS_DEVICE": "cuda"}
    if rehearse:
        cuda = {"IPAS_DEVICE": "cpu", "IPAS_CUDA_REHEARSAL": "1", "IPAS_UNET_DTYPES": "fp32"}
    reduced_tier = ["tests/host/test_apply.py", "tests/host/test_mask_aspect.py",
                    "tests/host/test_fast_path.py::test_requeue_with_a_new_weight_runs_no_encoder",
                    "tests/host/test_fast_path.py::test_cached_kv_samples_bit_identical_latents_to_per_call_recomputation"]
    return [
        ("host tier (reduced UNets, fp32) incl. weight-only re-queue cache", PYTEST + reduced_tier,
         {**cuda, "IPAS_UNET_DTYPES": "fp32"} if rehearse else cuda, 240),
        ("full-size SD1.5 + SDXL in fp16 / bf16 / fp8: weight 0 bit-identical, a weight acts, no added sync",
         PYTEST + ["tests/host/test_cuda.py"], cuda, 420),
        ("--novram: weights streamed, patch caches follow the model off the GPU",
         PYTEST + ["tests/host/test_cuda.py", "-k", "offload"], {**cuda, "IPAS_HOST_ARGS": "--novram",
                                                               "IPAS_UNET_DTYPES": "fp32" if rehearse else "fp16"},
         240),
        ("--lowvram: the same under partial loading",
         PYTEST + ["tests/host/test_cuda.py", "-k", "offload"], {**cuda, "IPAS_HOST_ARGS": "--lowvram",
                                                               "IPAS_UNET_DTYPES": "fp32" if rehearse else "fp16"},
         240),
        ("Flux (XLabs, InstantX) and SD3.5 at reduced width: weight 0 bit-identical, a weight acts, no hook left",
         PYTEST + ["tests/host/test_dit_apply.py", "-k", "weight_zero or input_model_unchanged or no_hook_left"],
         {**cuda, "IPAS_UNET_DTYPES": "fp32"} if rehearse else cuda, 240),
        ("whole UNet step with one adapter (SD1.5 512 px, SDXL 1024 px, fp16) and peak memory of 1 and 4",
         [sys.executable, "bench/gpu_step.py", "--json", "{out}/gpu_step.json"]
         + (["--rehearse"] if rehearse else ["--sdxl"]), {}, 300),
    ]


def _text(output: str | bytes | None) -> str:
    """A child's output as text (``TimeoutExpired`` may carry bytes even when text was asked for)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def run_check(name: str, command: list[str], env: dict[str, str], limit: int, out: Path) -> dict:
    command = [part.replace("{out}", str(out)) for part in command]
    started = time.monotonic()
    log = out / f"check{len(list(out.glob('check*.log'))) + 1}.log"
    try:
        done = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=limit)
        status, stdout, stderr = ("pass" if done.returncode == 0 else f"fail (exit {done.returncode})",
                                  done.stdout, done.stderr)
    except subprocess.TimeoutExpired as exc:
        status, stdout, stderr = f"fail (over {limit} s)", exc.stdout, exc.stderr
    text = _text(stdout) + _text(stderr)
    log.write_text(text)
    tail = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
    return {"check": name, "status": status, "seconds": round(time.monotonic() - started, 1),
            "last_line": tail[0][:200], "log": log.name, "env": env}


def write_summary(out: Path, results: list[dict], machine: dict) -> None:
    (out / "summary.json").write_text(json.dumps({"machine": machine, "checks": results}, indent=2))
    lines = [f"GPU check on {machine['gpu']} ({machine['date']}, torch {machine['torch']}, "
             f"{machine['seconds']:.0f} s in all)", "", "| check | result | s | last line |", "|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['status']} | {r['seconds']} | {r['last_line'].replace('|', '/')} |"
              for r in results]
    step = out / "gpu_step.json"
    if step.is_file():
        for r in json.loads(step.read_text())["runs"]:
            lines.append(f"\n{r['model']}: one adapter = {r['ratio_one_adapter']:.3f}x the unpatched step; peak "
                         f"memory added: {r['peak_mib']['added_by_one']} MiB (one), {r['peak_mib']['added_by_four']} "
                         "MiB (four)")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for summary.json, summary.md and one log per check")
    parser.add_argument("--rehearse", action="store_true", help="CPU forms of the checks (to test this script)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    import torch

    started = time.monotonic()
    results = []
    for name, command, env, limit in checks(args.rehearse):
        print(f"[gpu_check] {name} ...", flush=True)
        # the limits are sized for the GPU machine; a rehearsal on 2 busy cores gets four times as long
        results.append(run_check(name, command, env, limit * (4 if args.rehearse else 1), out))
        print(f"[gpu_check]   {results[-1]['status']} in {results[-1]['seconds']} s", flush=True)
    gpu = "rehearsal on the CPU" if args.rehearse else torch.cuda.get_device_name()
    machine = {"gpu": gpu, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
               "seconds": time.monotonic() - started}
    write_summary(out, results, machine)
    return 0 if all(r["status"] == "pass" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
