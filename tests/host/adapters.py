"""Adapter files for the host tier's test UNets, and applying them through the pack's nodes."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.fixtures.adapters import write_adapter
from tests.fixtures.comfy_models import diffusers_widths, family_of
from tests.host import harness

# Image-embeds adapters read a 1024-wide image_embeds, which the tiny CLIP vision produces.
ADAPTER_FOR = {"sd15": "ip-adapter_sd15.safetensors", "sdxl": "ip-adapter_sdxl_vit-h.safetensors"}


def adapter_file(ipadapter_dir: Path, unet_name: str, model, seed: int = 0) -> str:
    """Write (once) a random adapter fitted to ``model``'s attn2 sites; return its name in the ipadapter folder."""
    published = ADAPTER_FOR[family_of(unet_name)]
    folder = Path(ipadapter_dir) / f"{unet_name}-seed{seed}"
    if not (folder / published).exists():
        write_adapter(published, folder, seed=seed, sites=diffusers_widths(model))
    name = f"{folder.name}/{published}"
    assert name in harness.folder_paths().get_filename_list("ipadapter"), f"{name} is not listed by ComfyUI"
    return name


def load(ipadapter_file: str):
    return harness.run_node("IPAdapterModelLoader", ipadapter_file=ipadapter_file)[0]


def apply(model, ipadapter, image: torch.Tensor, clip_vision, weight: float = 1.0, weight_type: str = "linear",
          **options):
    """IPAdapterAdvanced with the incumbent's defaults; returns the patched MODEL."""
    inputs = dict(model=model, ipadapter=ipadapter, image=image, weight=weight, weight_type=weight_type,
                  combine_embeds="concat", start_at=0.0, end_at=1.0, embeds_scaling="V only", clip_vision=clip_vision)
    inputs.update(options)
    return harness.run_node("IPAdapterAdvanced", **inputs)[0]
