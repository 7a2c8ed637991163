"""One real ComfyUI server with the demo models for every test module that needs it.

Starting ``main.py`` with the full-size demo checkpoint costs tens of seconds and ~6 GB, so the
server is started on first use and shared by every module of the session (stopped when pytest
exits). Use the ``demo_server`` fixture; ``prepared`` turns a workflow into a fast prompt.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ipadapter_cli import edit
from ipadapter_cli.client import ComfyError
from ipadapter_cli.convert import convert
from ipadapter_cli.server import ComfyServer

STEPS, SIZE = 2, 64
CHECKPOINT = "demo_sd15.safetensors"
REFERENCE = "ipadapter_demo_reference.png"
_shared: dict = {}


def _start(comfyui_root: Path) -> ComfyServer:
    from tests.fixtures.demo_models import write_demo_models

    work = Path(tempfile.mkdtemp(prefix="ipas-demo-server-"))
    models = write_demo_models(work / "models", comfyui_root)
    server = ComfyServer(comfyui_root, work / "server", models["models_dir"], extra_args=("--fp16-unet",))
    server.start()
    shutil.copyfile(models["reference_image"], server.input_dir / REFERENCE)
    for name, path in models["face_images"].items():  # the FaceID workflows' LoadImage names
        shutil.copyfile(path, server.input_dir / name)
    server.object_info = server.client.object_info()
    server.work_root = work
    return server


@pytest.fixture(scope="session")
def demo_server(comfyui_root, request):
    """The shared server (``ComfyServer`` with ``object_info``), started on first use."""
    if "server" not in _shared:
        _shared["server"] = _start(comfyui_root)

        def stop() -> None:
            server = _shared.pop("server", None)
            if server is not None:
                server.stop()
                shutil.rmtree(server.work_root, ignore_errors=True)

        request.config.add_cleanup(stop)
    return _shared["server"]


def prepared(server, workflow: dict, size: int = SIZE, steps: int = STEPS) -> dict:
    """A UI workflow as a fast prompt: demo checkpoint and reference picture, tiny latent, few steps."""
    prompt = convert(workflow, server.object_info)
    edit.set_inputs(prompt, "CheckpointLoaderSimple", ckpt_name=CHECKPOINT)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "EmptyLatentImage":
            inputs.update(width=size, height=size)
        elif node["class_type"] in ("KSampler", "KSamplerAdvanced"):
            inputs["steps"] = steps
        elif node["class_type"] == "LoadImage":
            inputs["image"] = REFERENCE
        elif node["class_type"] == "SolidMask":  # keep the mask nodes proportional to the latent
            inputs.update(width=max(1, inputs["width"] * size // 512), height=max(1, inputs["height"] * size // 512))
        elif node["class_type"] == "MaskComposite":
            inputs.update(x=inputs["x"] * size // 512, y=inputs["y"] * size // 512)
    return prompt


def run_entry(server, prompt: dict, label: str, timeout: float = 900) -> dict:
    """Queue ``prompt``; its history entry (fails the test with the server log's tail)."""
    edit.set_inputs(prompt, "SaveImage", filename_prefix=f"test_{label}")
    started = time.monotonic()
    try:
        entry = server.client.run(prompt, timeout=timeout)
    except (ComfyError, TimeoutError) as exc:
        pytest.fail(f"{label}: {exc}\n--- server log (tail) ---\n{server.tail(60)}")
    print(f"[{label}] {time.monotonic() - started:.1f} s")
    return entry


def entry_images(server, entry: dict, kind: str = "output", node: str | None = None) -> list[np.ndarray]:
    """A history entry's images of ``kind`` ("output", or "temp" for previews), of one node or all, as uint8."""
    from PIL import Image

    outputs = entry.get("outputs") or {}
    refs = [ref for node_id, out in outputs.items() if node is None or node_id == node
            for ref in out.get("images") or [] if ref.get("type") == kind]
    return [np.asarray(Image.open(io.BytesIO(server.client.image_bytes(ref))).convert("RGB")) for ref in refs]


def run_images(server, prompt: dict, label: str, timeout: float = 900) -> list[np.ndarray]:
    """Queue ``prompt``; the output images as uint8 arrays (fails the test with the server log's tail)."""
    return entry_images(server, run_entry(server, prompt, label, timeout))
