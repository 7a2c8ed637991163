"""Flux.1 and SD3.5 IP-Adapters on the real ComfyUI server, through ComfyUI's own loaders (issue 12).

One server for the module (``main.py --cpu``, not the demo server: that one runs ``--fp16-unet`` on
other folders), the model folder of tests/fixtures/dit_server_models.py, and per family the graph
UNETLoader -> IPAdapterUnifiedLoader (preset) -> IPAdapterAdvanced -> KSampler -> SaveLatent. Text
conditioning comes from a test-only custom node (tests/host/server_nodes/) copied next to the pack:
real text encoders are many GB. Latents are compared bit for bit: weight 0 must equal the graph
without the adapter nodes (same seed), weight 1 must differ.

Cost, measured on the 2-core dev machine while other suites ran (load average 5-8, so wall times are
inflated; the server's CPU time is the steadier number):
* fresh fixture cache: 35 s to write ~2.7 GB (thin Flux 1.1 GB, ViT-L 580 MB, SigLIP 817 MB, adapters
  250 MB); module 152 s wall in all (setup incl. the in-process ComfyUI boot 55 s);
* warm cache: module 141 s wall; server start 12-18 s; runs: Flux without adapter 6-10 s, XLabs w0 30-37 s
  (ViT-L encodes the reference and a black image), w1 5 s, InstantX Flux w0 40-46 s (one SigLIP-384
  encode, ~600 GFLOP), w1 7-8 s, SD3.5 runs 1-2 s each (they reuse that SigLIP encoding), doctor 1 s;
* server: ~67 CPU-seconds for the whole module, peak RSS 5.6 GB (Flux held in fp32 on CPU, 2.1 GB).
The module prints the same ``[dit-server]`` line on each run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from ipadapter_cli.client import ComfyError
from ipadapter_cli.server import ComfyServer

pytestmark = pytest.mark.slow

NODE_FILE = Path(__file__).resolve().parent / "server_nodes" / "ipas_test_conditioning.py"
XLABS_PRESET, INSTANTX_PRESET, SD3_PRESET = (
    "FLUX XLABS v1 (ViT-L)", "FLUX INSTANTX (SigLIP)", "SD3.5-LARGE INSTANTX (SigLIP)")
SIZE, STEPS, SEED = 128, 2, 7  # 128 px -> a 16x16 latent (8x8 = 64 image tokens)
CFG = {"flux": 1.0, "sd3": 3.0}
_timings: dict[str, float] = {}
_latents: dict[str, object] = {}


class DitServer(ComfyServer):
    """The pack's test server plus the test conditioning node."""

    def _prepare(self) -> Path:
        config = super()._prepare()
        shutil.copyfile(NODE_FILE, self.work / "custom_nodes" / NODE_FILE.name)
        return config


def server_usage(pid: int) -> str:
    """The server's peak resident set and CPU seconds so far (Linux /proc; empty elsewhere). CPU time
    says more than wall time on a shared machine."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, AttributeError, StopIteration, ValueError, IndexError):
        return ""
    return f"; server peak RSS {peak:.0f} MB, CPU {cpu:.0f} s"


@pytest.fixture(scope="module")
def server(comfyui_root, comfy):  # `comfy`: ComfyUI importable in-process, which the model writers need
    from tests.fixtures import dit_server_models as dsm

    work = Path(tempfile.mkdtemp(prefix="ipas-dit-server-"))
    started = time.monotonic()
    models = dsm.write_server_models(work / "models")
    _timings["fixtures"] = time.monotonic() - started
    srv = DitServer(comfyui_root, work / "server", models["models_dir"])
    started = time.monotonic()
    srv.start()
    _timings["server start"] = time.monotonic() - started
    shutil.copyfile(models["reference_image"], srv.input_dir / dsm.REFERENCE_IMAGE)
    srv.object_info = srv.client.object_info()
    srv.models = models
    try:
        yield srv
    finally:
        usage = server_usage(srv.proc.pid) if srv.proc is not None else ""
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
        print("\n[dit-server] " + ", ".join(f"{k}: {v:.1f} s" for k, v in _timings.items()) + usage)


def graph(family: str, label: str, preset: str | None = None, weight: float = 1.0) -> dict:
    """The API prompt: the diffusion model, the adapter nodes if ``preset``, random conditioning, 2 steps."""
    from tests.fixtures import dit_server_models as dsm

    unet = dsm.FLUX_UNET if family == "flux" else dsm.SD3_UNET
    prompt = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}}}
    model = ["1", 0]
    if preset is not None:
        prompt["2"] = {"class_type": "IPAdapterUnifiedLoader", "inputs": {"model": model, "preset": preset}}
        prompt["3"] = {"class_type": "LoadImage", "inputs": {"image": dsm.REFERENCE_IMAGE}}
        prompt["4"] = {"class_type": "IPAdapterAdvanced", "inputs": {
            "model": ["2", 0], "ipadapter": ["2", 1], "image": ["3", 0], "weight": weight, "weight_type": "linear",
            "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0, "embeds_scaling": "V only"}}
        model = ["4", 0]
    for node, seed in (("5", 1), ("6", 2)):  # positive, negative
        prompt[node] = {"class_type": "IPASTestConditioning",
                        "inputs": {"family": family, "seed": seed, "tokens": 8, "guidance": 3.5}}
    prompt["7"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}}
    prompt["8"] = {"class_type": "KSampler", "inputs": {
        "model": model, "seed": SEED, "steps": STEPS, "cfg": CFG[family], "sampler_name": "euler",
        "scheduler": "simple", "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0}}
    prompt["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": f"dit/{label}"}}
    return prompt


def run(server, prompt: dict, label: str, timeout: float = 600):
    """Queue ``prompt``; its history entry (fails the test with the server log's tail)."""
    started = time.monotonic()
    try:
        entry = server.client.run(prompt, timeout=timeout)
    except (ComfyError, TimeoutError) as exc:
        pytest.fail(f"{label}: {exc}\n--- server log (tail) ---\n{server.tail(60)}")
    _timings[label] = time.monotonic() - started
    return entry


def latent(server, family: str, label: str, preset: str | None = None, weight: float = 1.0):
    """The saved latent of one graph, run once per module."""
    from safetensors.torch import load_file

    if label not in _latents:
        entry = run(server, graph(family, label, preset, weight), label)
        refs = entry["outputs"]["9"]["latents"]
        assert len(refs) == 1, refs
        path = server.output_dir / refs[0]["subfolder"] / refs[0]["filename"]
        _latents[label] = load_file(str(path))["latent_tensor"]
    return _latents[label]


def test_server_lists_models_presets_and_the_test_node(server):
    from tests.fixtures import dit_server_models as dsm

    unets = server.object_info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert {dsm.FLUX_UNET, dsm.SD3_UNET} <= set(unets)
    presets = server.object_info["IPAdapterUnifiedLoader"]["input"]["required"]["preset"][0]
    assert {XLABS_PRESET, INSTANTX_PRESET, SD3_PRESET} <= set(presets)
    assert "IPASTestConditioning" in server.object_info


def test_doctor_identifies_the_files_and_finds_the_presets_ready(server):
    from ipadapter_core import config
    from tests.fixtures import dit_server_models as dsm

    entry = run(server, {"1": {"class_type": "IPAdapterDoctor", "inputs": {}}}, "doctor")
    text = entry["outputs"]["1"]["text"][0]
    encoders = config.encoders()
    vit_l = next(line for line in text.splitlines() if "clip-vit-large-patch14.safetensors:" in line)
    assert f"CLIP vision: {encoders['vit-l']['label']}" in vit_l, vit_l  # ViT-L at 224 px, not 336
    siglip = next(line for line in text.splitlines() if "siglip-so400m-patch14-384.safetensors:" in line)
    assert f"CLIP vision: {encoders['siglip-384']['label']}" in siglip and "has the attention-pooling head" in siglip
    ready = {
        XLABS_PRESET: f"{dsm.XLABS} + clip-vit-large-patch14.safetensors",
        INSTANTX_PRESET: f"{dsm.INSTANTX_FLUX} + siglip-so400m-patch14-384.safetensors",
        SD3_PRESET: f"{dsm.INSTANTX_SD3} + siglip-so400m-patch14-384.safetensors",
    }
    for preset, files in ready.items():
        family = "sd3" if preset == SD3_PRESET else "flux"
        assert f"ready    {preset} [{family}]: {files}" in text, text


@pytest.mark.parametrize(("family", "preset"), [("flux", XLABS_PRESET), ("flux", INSTANTX_PRESET),
                                                ("sd3", SD3_PRESET)], ids=["xlabs", "instantx-flux", "sd35"])
def test_weight_zero_is_the_graph_without_the_adapter(server, family, preset):
    import torch

    tag = preset.split(" ")[1].lower()
    without = latent(server, family, f"{family}_plain")
    at_zero = latent(server, family, f"{family}_{tag}_w0", preset, weight=0.0)
    at_one = latent(server, family, f"{family}_{tag}_w1", preset, weight=1.0)
    assert without.shape == (1, 16, SIZE // 8, SIZE // 8) and torch.isfinite(without).all()
    assert torch.equal(at_zero, without), "weight 0 changed the latent"
    assert torch.isfinite(at_one).all()
    assert not torch.equal(at_one, without), "weight 1 gave exactly the latent without the adapter"


def test_the_server_log_has_no_traceback_or_warning_from_the_pack(server):
    """What real ComfyUI printed while it ran the graphs above: no traceback, no pack warning (a skipped block,
    a missing head) in a run where every block runs and every file is in place."""
    log = server.log()
    print("--- server log ---\n" + log)
    ours = [block for block in log.split("Traceback (most recent call last):")[1:]
            if "ipadapter" in block.lower().split("\n\n")[0]]  # ComfyUI's own (e.g. torchaudio) are not ours
    assert not ours, ours
    assert "did not act" not in log and "pooling head" not in log
