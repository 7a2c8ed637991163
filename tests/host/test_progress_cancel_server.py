"""Progress and Cancel through the real server (issue 14 acceptance), watched on its websocket.

A 16-frame IPAdapterBatch encodes 2 frames at a time (8 chunks) with the demo ViT-H encoder on CPU:
* every chunk sends a websocket ``progress`` message for the IPAdapterBatch node;
* ``POST /interrupt`` after the first chunk ends the prompt at that node within one more chunk;
* the identical prompt queued next encodes every chunk afresh (Cancel left nothing in the encoding cache) and
  samples the same latent, bit for bit, as a clean run. The clean run uses the same encoder file under a second
  name, so it gets its own encoder object (the encoding cache keys on the object) and ComfyUI re-executes it.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.host.server_fixtures import CHECKPOINT, REFERENCE, demo_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
SECOND_NAME = "ipas_progress_test_encoder.safetensors"  # matches no preset pattern
FRAMES, CHUNK = 16, 2
CHUNKS = FRAMES // CHUNK
BATCH_NODE = "6"
_state: dict = {}


@pytest.fixture(scope="module")
def server(demo_server):  # noqa: F811
    folder = demo_server.models_dir / "clip_vision"
    link = folder / SECOND_NAME
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.realpath(folder / CLIP_VISION))
    yield demo_server
    link.unlink(missing_ok=True)


def graph(clip_name: str, prefix: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": "ip-adapter_sd15.safetensors"}},
        "3": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": clip_name}},
        "4": {"class_type": "LoadImage", "inputs": {"image": REFERENCE}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": FRAMES}},
        BATCH_NODE: {"class_type": "IPAdapterBatch", "inputs": {
            "model": ["1", 0], "ipadapter": ["2", 0], "image": ["5", 0], "weight": 1.0, "weight_type": "linear",
            "start_at": 0.0, "end_at": 1.0, "embeds_scaling": "V only", "encode_batch_size": CHUNK,
            "clip_vision": ["3", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo"}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "KSampler", "inputs": {
            "model": [BATCH_NODE, 0], "seed": 5, "steps": 2, "cfg": 4.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["7", 0], "negative": ["8", 0], "latent_image": ["9", 0],
            "denoise": 1.0}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"progress/{prefix}"}},
    }


def _ended(prompt_id: str):
    return lambda d: d.get("node") is None and d.get("prompt_id") == prompt_id


def _chunk_progress(ws, prompt_id: str) -> list[tuple[float, int, int]]:
    return [(t, d["value"], d["max"]) for t, d in ws.of("progress", prompt_id) if d.get("node") == BATCH_NODE]


def _run(server, prompt: dict) -> tuple[list[tuple[float, int, int]], object]:
    """Queue, wait for the end; (the batch node's progress messages, the saved latent)."""
    from safetensors.torch import load_file

    client = server.client
    with client.listen() as ws:
        prompt_id = client.queue(prompt)
        ws.wait_for("executing", _ended(prompt_id), timeout=900)
        errors = ws.of("execution_error", prompt_id) + ws.of("execution_interrupted", prompt_id)
        assert not errors, f"{errors}\n--- server log (tail) ---\n{server.tail(40)}"
        progress = _chunk_progress(ws, prompt_id)
    entry = client.get_json(f"/history/{prompt_id}")[prompt_id]
    ref = entry["outputs"]["11"]["latents"][0]
    return progress, load_file(str(server.output_dir / ref["subfolder"] / ref["filename"]))["latent_tensor"]


def test_batch_encode_sends_progress_for_every_chunk(server):
    progress, latent = _run(server, graph(SECOND_NAME, "clean"))
    assert [(v, m) for _, v, m in progress] == [(i, CHUNKS) for i in range(1, CHUNKS + 1)], progress
    _state["clean"] = latent


def test_interrupt_during_the_encode_ends_the_prompt_within_one_chunk(server):
    client = server.client
    with client.listen() as ws:
        prompt_id = client.queue(graph(CLIP_VISION, "after_cancel"))
        ws.wait_for("progress", lambda d: d.get("prompt_id") == prompt_id and d.get("node") == BATCH_NODE,
                    timeout=600)
        sent = time.monotonic()
        client.interrupt()
        _, stopped = ws.wait_for("execution_interrupted", lambda d: d.get("prompt_id") == prompt_id, timeout=300)
        ws.wait_for("executing", _ended(prompt_id), timeout=60)
        progress = _chunk_progress(ws, prompt_id)
    assert stopped.get("node_id") == BATCH_NODE, f"the prompt ran on past the encode: {stopped}"
    later = [v for t, v, _ in progress if t > sent]
    assert len(later) <= 1, f"chunks went on after the interrupt: {progress}"
    assert max(v for _, v, _ in progress) < CHUNKS
    assert not ws.of("executed", prompt_id), "an output node ran"


def test_the_next_identical_run_equals_a_clean_run(server):
    import torch

    if "clean" not in _state:
        pytest.skip("needs the clean run of the first test")
    progress, latent = _run(server, graph(CLIP_VISION, "after_cancel"))
    assert [v for _, v, _ in progress] == list(range(1, CHUNKS + 1)), "not every chunk was encoded afresh"
    assert torch.equal(latent, _state["clean"]), "the run after Cancel differs from a clean run"
