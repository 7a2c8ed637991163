"""The doctor as a node (report shown in the UI) and as a command (``python -m ipadapter_cli doctor``).

Acceptance (issue 7 §4): on the demo model set plus one misnamed and one corrupt file, the report
identifies both. The set here is the demo set without its 3.5 GB checkpoint (the doctor does not read
checkpoints): the two demo adapters and the ViT-H encoder from the shared fixture cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.adapters import cached_adapter
from tests.fixtures.clip_vision import CLIP_VISION_LAYOUTS, cached_clip_vision
from tests.fixtures.demo_models import ADAPTERS
from tests.host import harness

MISNAMED = "ip-adapter-plus-face_sd15.safetensors"  # holds the basic SD1.5 adapter
CORRUPT = "ip-adapter-full-face_sd15.safetensors"  # the first half of a real file (an interrupted download)


def _demo_like(models: Path) -> None:
    for sub in ("ipadapter", "clip_vision", "loras"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    for name in ADAPTERS:
        os.symlink(cached_adapter(name), models / "ipadapter" / name)
    os.symlink(cached_clip_vision("vit-h"), models / "clip_vision" / CLIP_VISION_LAYOUTS["vit-h"].file)
    (models / "ipadapter" / MISNAMED).write_bytes(cached_adapter("ip-adapter_sd15.safetensors").read_bytes())
    data = cached_adapter("ip-adapter-full-face_sd15.safetensors").read_bytes()
    (models / "ipadapter" / CORRUPT).write_bytes(data[: len(data) // 2])


def _line(text: str, name: str) -> str:
    hits = [line for line in text.splitlines() if line.rstrip().split(":")[0].strip().endswith(name)]
    assert len(hits) == 1, f"{name}: {hits}\n{text}"
    return hits[0]


def _check_report(text: str) -> None:
    assert "IPAdapter Suite doctor" in text
    assert "SD1.5 basic" in _line(text, "ip-adapter_sd15.safetensors")
    assert "plus" in _line(text, "ip-adapter-plus_sd15.safetensors")
    misnamed = _line(text, MISNAMED)
    assert "SD1.5 basic" in misnamed and "plus" not in misnamed.split(":", 1)[1], misnamed
    corrupt = _line(text, CORRUPT)
    assert "BROKEN" in corrupt and "download" in corrupt.lower(), corrupt
    assert "CLIP vision" in _line(text, CLIP_VISION_LAYOUTS["vit-h"].file)


def test_command_on_a_demo_like_folder(tmp_path):
    root = tmp_path / "ComfyUI"
    _demo_like(root / "models")
    env = {**os.environ, "COMFYUI_PATH": str(tmp_path / "elsewhere")}  # --comfyui must win over the variable
    done = subprocess.run([sys.executable, "-m", "ipadapter_cli", "doctor", "--comfyui", str(root)], env=env,
                          cwd=harness.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _check_report(done.stdout)


def test_command_without_a_comfyui_folder_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ipadapter_cli", "doctor", "--comfyui", str(tmp_path / "none")],
                          cwd=harness.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "no ComfyUI folder" in done.stderr and "--comfyui" in done.stderr


def test_node_shows_the_report_in_the_ui(pack, ipadapter_dir):
    folder = ipadapter_dir / "doctor-check"
    folder.mkdir(exist_ok=True)
    (folder / MISNAMED).write_bytes(cached_adapter("ip-adapter_sd15.safetensors").read_bytes())
    (folder / CORRUPT).write_bytes(b"<!DOCTYPE html><html>429 Too Many Requests</html>" * 30)
    cls = pack.NODE_CLASS_MAPPINGS["IPAdapterDoctor"]
    assert cls.OUTPUT_NODE is True
    try:
        result = harness.run_node("IPAdapterDoctor")
    finally:  # the folder is shared by the session: a misnamed plus-face file would change other tests
        shutil.rmtree(folder)
    assert isinstance(result, dict) and set(result) >= {"ui", "result"}
    (text,) = result["ui"]["text"]
    assert result["result"] == (text,)
    assert "SD1.5 basic" in _line(text, f"doctor-check/{MISNAMED}")
    assert "BROKEN" in _line(text, f"doctor-check/{CORRUPT}")
    assert str(ipadapter_dir) in text  # the folders ComfyUI actually uses, incl. extra_model_paths entries
