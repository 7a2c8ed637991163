"""The only module that calls ComfyUI internals (other than node declarations).

Folder registration, the UNet's cross-attention sites, attention patching, CLIP vision encoding,
sigma windows and file look-ups. When the host's API changes, this file changes.
"""

from __future__ import annotations

import os
import re
import weakref

import comfy.model_management as mm
import folder_paths
import torch
from comfy.ldm.modules.attention import optimized_attention

from ..ipadapter_core.attention import Application, CrossAttentionPatch
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.sites import Site

FOLDER = "ipadapter"
_SITE_PATH = re.compile(
    r"^(input_blocks|output_blocks)\.(\d+)\.\d+\.transformer_blocks\.(\d+)\.attn2$"
    r"|^(middle_block)\.\d+\.transformer_blocks\.(\d+)\.attn2$"
)
_BLOCK_NAMES = {"input_blocks": "input", "middle_block": "middle", "output_blocks": "output"}


def register_model_folder() -> None:
    """Add models/ipadapter, keeping any paths extra_model_paths.yaml already gave the key."""
    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths = list(folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0])
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, folder_paths.supported_pt_extensions)


def comfy_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, extra: dict) -> torch.Tensor:
    """The host's optimized attention, with the block's precision and attention overrides."""
    return optimized_attention(q, k, v, heads, attn_precision=extra.get("attn_precision"), transformer_options=extra)


_sites_cache: weakref.WeakKeyDictionary[torch.nn.Module, list[Site]] = weakref.WeakKeyDictionary()


def unet_of(model) -> torch.nn.Module:
    return model.model.diffusion_model


def model_sites(model) -> list[Site]:
    """Every attn2 site of the UNet in run order, with ComfyUI's keys and transformer indices."""
    unet = unet_of(model)
    cached = _sites_cache.get(unet)
    if cached is not None:
        return cached
    sites: list[Site] = []
    transformer_of: dict[str, int] = {}
    for name, module in unet.named_modules():
        match = _SITE_PATH.match(name)
        if match is None or module is None:
            continue
        if match.group(4):
            block, number, index = "middle", 0, int(match.group(5))
        else:
            block, number, index = _BLOCK_NAMES[match.group(1)], int(match.group(2)), int(match.group(3))
        transformer = name.split(".transformer_blocks.")[0]
        t_idx = transformer_of.setdefault(transformer, len(transformer_of))
        sites.append(Site((block, number, index), t_idx, module.to_q.weight.shape[0], module.heads))
    _sites_cache[unet] = sites
    return sites


def context_dim(model) -> int | None:
    """The text-context width the UNet's cross-attention reads (768 SD1.5, 2048 SDXL, 1280 refiner)."""
    for name, module in unet_of(model).named_modules():
        if name.endswith("attn2") and hasattr(module, "to_k"):
            return int(module.to_k.weight.shape[1])
    return None


def sigma_window(model, start_at: float, end_at: float) -> tuple[float, float]:
    sampling = model.get_model_object("model_sampling")
    return float(sampling.percent_to_sigma(start_at)), float(sampling.percent_to_sigma(end_at))


def compute_device() -> torch.device:
    return mm.get_torch_device()


def patch_model(model, application: Application) -> None:
    """Add one application to every site it acts on, on an already-cloned model."""
    replaces = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for site in model_sites(model):
        if site.key not in application.sites:
            continue
        existing = replaces.get(site.key) or replaces.get(site.key[:2])
        if isinstance(existing, CrossAttentionPatch):
            patch = existing.stacked(application)
        else:  # nothing there, or another pack's replacement: ours runs it and adds to its result
            patch = CrossAttentionPatch(site.key, (application,), comfy_attention, inner=existing)
        model.set_model_attn2_replace(patch, *site.key)


def encode_image(clip_vision, image: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """CLIP-encode an IMAGE batch; returns image_embeds and penultimate_hidden_states (fp32, CPU).

    With a mask, masked-out pixels are zeroed after normalisation (the Encoder node's mask input).
    """
    if mask is None:
        out = clip_vision.encode_image(image)
        return {"image_embeds": out["image_embeds"].float(), "penultimate_hidden_states":
                out["penultimate_hidden_states"].float()}
    import comfy.clip_vision

    mm.load_model_gpu(clip_vision.patcher)
    size = clip_vision.image_size
    pixels = comfy.clip_vision.clip_preprocess(
        image.to(clip_vision.load_device), size=size, mean=clip_vision.image_mean, std=clip_vision.image_std
    ).float()
    pixels = pixels * _square_mask(mask, size).to(pixels.device)
    out = clip_vision.model(pixel_values=pixels, intermediate_output=-2)
    dev = mm.intermediate_device()
    return {"image_embeds": out[2].to(dev).float(), "penultimate_hidden_states": out[1].to(dev).float()}


def _square_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop a [M,H,W] mask to a square and resize it to the encoder's input size -> [M,1,S,S]."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    h, w = mask.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    mask = mask[:, top:top + side, left:left + side].unsqueeze(1).float()
    return torch.nn.functional.interpolate(mask, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def black_image(clip_vision) -> torch.Tensor:
    size = getattr(clip_vision, "image_size", 224)
    return torch.zeros(1, size, size, 3)


def folder_paths_for(name: str) -> list[str]:
    try:
        return list(folder_paths.get_folder_paths(name))
    except KeyError:
        return []


def list_files(name: str) -> list[str]:
    try:
        return list(folder_paths.get_filename_list(name))
    except KeyError:
        return []


def full_path(name: str, filename: str) -> str | None:
    return folder_paths.get_full_path(name, filename)


def load_clip_vision(path: str):
    import comfy.clip_vision

    model = comfy.clip_vision.load(path)
    if model is None:
        raise IPAdapterError(
            f"'{os.path.basename(path)}' is not a CLIP vision model ComfyUI recognises.",
            expected="a CLIP vision encoder (e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors)",
            fix="Put the right encoder file in models/clip_vision.",
        )
    return model


def comfyui_version() -> str | None:
    try:
        import comfyui_version

        return comfyui_version.__version__
    except ImportError:
        return None


def interrupted() -> None:
    mm.throw_exception_if_processing_interrupted()
