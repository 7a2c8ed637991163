"""The doctor identifies every file by content: a misnamed adapter and a corrupt download included."""

from __future__ import annotations

import shutil
from pathlib import Path

from ipadapter_core import doctor
from ipadapter_core.inventory import identify
from tests.fixtures.adapters import cached_adapter


def _comfy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    for key in ("ipadapter", "clip_vision", "loras"):
        (root / "models" / key).mkdir(parents=True)
    return root


def test_report_names_misnamed_and_corrupt_files(tmp_path):
    root = _comfy_tree(tmp_path)
    ipa = root / "models" / "ipadapter"
    shutil.copy(cached_adapter("ip-adapter_sd15.safetensors"), ipa / "ip-adapter_sd15.safetensors")
    # A plus model saved under the STANDARD name: content, not the name, decides.
    shutil.copy(cached_adapter("ip-adapter-plus_sd15.safetensors"), ipa / "ip-adapter_sd15_light_v11.safetensors")
    (ipa / "ip-adapter-plus-face_sd15.safetensors").write_bytes(b"<!DOCTYPE html><html>rate limited</html>" * 20)
    text = doctor.report(doctor.comfyui_folders(str(root)), "0.0-test")

    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if ".safetensors" in line}
    assert "SD1.5 basic" in lines["ip-adapter_sd15.safetensors"]
    assert "plus" in lines["ip-adapter_sd15_light_v11.safetensors"]
    corrupt = next(v for k, v in lines.items() if k.endswith("ip-adapter-plus-face_sd15.safetensors"))
    assert "BROKEN" in corrupt and "HTML" in corrupt
    assert "missing  FULL FACE" in text and "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors" in text


def test_extra_model_paths_folders_are_scanned(tmp_path):
    root = _comfy_tree(tmp_path)
    extra = tmp_path / "shared_models"
    (extra / "ipa").mkdir(parents=True)
    shutil.copy(cached_adapter("ip-adapter_sd15.safetensors"), extra / "ipa" / "renamed.safetensors")
    (root / "extra_model_paths.yaml").write_text(f"studio:\n  base_path: {extra}\n  ipadapter: ipa\n")
    folders = doctor.comfyui_folders(str(root))
    assert str(extra / "ipa") in folders["ipadapter"]
    assert "renamed.safetensors: IP-Adapter: SD1.5 basic" in doctor.report(folders)


def test_identify_reads_bin_and_clip_vision_by_content(tmp_path):
    report = identify(str(cached_adapter("ip-adapter-faceid_sd15.bin")))
    assert report.role == "adapter" and report.kind == "faceid" and report.needs_lora
    assert "InsightFace" in report.summary
    other = tmp_path / "model.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"visual_projection.weight": torch.zeros(1024, 1280)}, str(other))
    assert identify(str(other)).encoder == "vit-h"
