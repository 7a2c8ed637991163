"""The UNet side of the host glue: the calls into ComfyUI internals (other than node declarations).

Folder registration, the UNet's cross-attention sites, attention patching, CLIP vision encoding,
sigma windows and file look-ups. Its siblings are the rest of the glue: ``host_compat`` (bridges
over ComfyUI versions), ``host_paths`` (file names confined to their folders), ``host_progress``
(progress bar and Cancel) and ``dit_hooks`` (transformers).
When the host's API changes, these files change.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Callable

import comfy.model_management as mm
import folder_paths
import torch
from comfy.ldm.modules.attention import attention_pytorch, optimized_attention

from ..ipadapter_core import few_token_attention
from ..ipadapter_core.attention import Application, CrossAttentionPatch
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.sites import Site
from .host_compat import clip_preprocess
from .host_paths import input_file_path, model_name, output_save_path  # noqa: F401  (the nodes' file look-ups)

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


def image_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, extra: dict) -> torch.Tensor:
    """Attention over the adapter's few image tokens.

    On a CPU in fp32 the host's default backend (sub-quadratic, built for long key sequences) costs
    3-5x the host's own SDPA wrapper for 4-257 keys; fp32 needs no precision upcast, so the SDPA
    wrapper (which still honours attention-override nodes) is used there. Everywhere else: the
    host's configured attention with the block's precision.
    """
    if q.device.type == "cpu" and q.dtype == torch.float32:
        return attention_pytorch(q, k, v, heads, transformer_options=extra)
    return comfy_attention(q, k, v, heads, extra)


def few_token_path(q: torch.Tensor, extra: dict, heads: int, tokens: int) -> bool:
    """Whether to add the image part by ``few_token_attention``'s two products instead of an attention call.

    Only where it is the faster path (fp32 on a CPU, few heads x tokens: see that module), and never while
    an attention-override node is active: such a node expects to see every attention call.
    """
    return "optimized_attention_override" not in extra and few_token_attention.worthwhile(q, heads, tokens)


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


_context_cache: weakref.WeakKeyDictionary[torch.nn.Module, int | None] = weakref.WeakKeyDictionary()


def context_dim(model) -> int | None:
    """The text-context width the UNet's cross-attention reads (768 SD1.5, 2048 SDXL, 1280 refiner).

    Cached per UNet: every apply node asks, and walking a large UNet's modules is not free."""
    unet = unet_of(model)
    if unet not in _context_cache:
        _context_cache[unet] = next((int(m.to_k.weight.shape[1]) for name, m in unet.named_modules()
                                     if name.endswith("attn2") and hasattr(m, "to_k")), None)
    return _context_cache[unet]


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
            patch = CrossAttentionPatch(site.key, (application,), comfy_attention, inner=existing,
                                        image_attention=image_attention, few_tokens=few_token_path)
        model.set_model_attn2_replace(patch, *site.key)


def encode_image(clip_vision, image: torch.Tensor, mask: torch.Tensor | None = None,
                 crop: bool = True) -> dict[str, torch.Tensor]:
    """CLIP-encode an IMAGE batch; returns image_embeds and penultimate_hidden_states (fp32, CPU).

    With a mask, masked-out pixels are zeroed after normalisation (the Encoder node's mask input).
    ``crop=False`` squashes the image to the encoder's square instead of centre-cropping (SigLIP's
    reference preprocessing).
    """
    if mask is None:
        out = clip_vision.encode_image(image, crop=crop)
        return {"image_embeds": out["image_embeds"].float(), "penultimate_hidden_states":
                out["penultimate_hidden_states"].float()}
    mm.load_model_gpu(clip_vision.patcher)
    size = clip_vision.image_size
    pixels = clip_preprocess()(
        image.to(clip_vision.load_device), size=size, mean=clip_vision.image_mean, std=clip_vision.image_std,
        crop=crop,
    ).float()
    pixels = pixels * _square_mask(mask, size, crop).to(pixels.device)
    out = clip_vision.model(pixel_values=pixels, intermediate_output=-2)
    dev = mm.intermediate_device()
    return {"image_embeds": out[2].to(dev).float(), "penultimate_hidden_states": out[1].to(dev).float()}


def _square_mask(mask: torch.Tensor, size: int, crop: bool = True) -> torch.Tensor:
    """Centre-crop (or, with ``crop=False``, squash) a [M,H,W] mask to the encoder's square -> [M,1,S,S]."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if crop:
        h, w = mask.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        mask = mask[:, top:top + side, left:left + side]
    mask = mask.unsqueeze(1).float()
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


def full_path(name: str, filename: str, input: str | None = None) -> str | None:
    """A model file's path, for a name that stays inside the folder (``host_paths.model_name``)."""
    return folder_paths.get_full_path(name, model_name(name, filename, input))


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


# --- files in ComfyUI's input/output folders and conditioning values (utility nodes) -------------


def input_directory() -> str:
    return folder_paths.get_input_directory()


def output_directory() -> str:
    return folder_paths.get_output_directory()


def conditioning_with_values(conditioning: list, values: dict) -> list:
    """A copy of a CONDITIONING with extra values set (the input is not modified)."""
    import node_helpers

    return node_helpers.conditioning_set_values(conditioning, values)


# --- FaceID: InsightFace folders, LoRA files and application, Kolors' encoder_hid_proj ----------------

INSIGHTFACE = "insightface"
_TRANSFORMER_BLOCK = re.compile(r"^(input_blocks|output_blocks|middle_block)\.\d+(\.\d+)?\.transformer_blocks\.\d+$")


def register_insightface_folder() -> None:
    """models/insightface plus any ``insightface:`` paths from extra_model_paths.yaml (kept first)."""
    default = os.path.join(folder_paths.models_dir, INSIGHTFACE)
    paths = list(folder_paths.folder_names_and_paths.get(INSIGHTFACE, ([], set()))[0])
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[INSIGHTFACE] = (paths, {".onnx"})


def insightface_roots() -> list[str]:
    return folder_paths_for(INSIGHTFACE)


def transformer_block_paths(model) -> list[str]:
    """The UNet's transformer blocks in diffusers processor order (down, up, mid), as LDM module paths."""
    order = {"input_blocks": 0, "output_blocks": 1, "middle_block": 2}
    found = [name for name, _ in unet_of(model).named_modules() if _TRANSFORMER_BLOCK.match(name)]
    return sorted(found, key=lambda n: order[n.split(".")[0]])  # stable: keeps run order within a section


_lora_headers: dict[tuple, dict[str, tuple[int, ...]] | None] = {}


def lora_shapes(path: str) -> dict[str, tuple[int, ...]] | None:
    """Key -> shape of a .safetensors LoRA from its header only (cached per file version); None otherwise."""
    if not path.lower().endswith((".safetensors", ".sft")):
        return None
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _lora_headers:
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as f:
                _lora_headers[key] = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception:  # not a readable safetensors file: only its name can match
            _lora_headers[key] = None
    return _lora_headers[key]


def lora_tensor(path: str, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_tensor(key)


def load_lora_file(path: str) -> dict[str, torch.Tensor]:
    import comfy.utils

    return comfy.utils.load_torch_file(path, safe_load=True)


def apply_lora(model, lora: dict[str, torch.Tensor], strength: float):
    """A clone of ``model`` with the LoRA patched in at ``strength`` (ComfyUI's LoRA mechanism).

    Refuses a LoRA none of whose keys fit this UNet, instead of ComfyUI's silent 'lora key not loaded'.
    """
    import comfy.lora
    import comfy.sd

    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    prefixes = {k[: -len(suffix)] for k in lora for suffix in (".lora_down.weight", ".lora_up.weight")
                if k.endswith(suffix)}
    if prefixes and not any(p in key_map for p in prefixes):
        raise IPAdapterError(
            f"None of the LoRA's {len(prefixes)} layers exist in this model (e.g. {sorted(prefixes)[0]}).",
            expected="the FaceID LoRA made for this checkpoint's family", fix="Use the LoRA that pairs with the "
            "adapter (see docs/faceid.md), or a checkpoint of the adapter's family.", input="lora_strength",
        )
    return comfy.sd.load_lora_for_models(model, None, lora, strength, 0)[0]


def encoder_hid_proj(model) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Kolors' ChatGLM (4096) -> UNet context (2048) projection, if the UNet loader kept it."""
    proj = getattr(unet_of(model), "encoder_hid_proj", None)
    if proj is None or not hasattr(proj, "weight"):
        return None
    bias = proj.bias if getattr(proj, "bias", None) is not None else torch.zeros(proj.weight.shape[0])
    return proj.weight.detach(), bias.detach()


def has_attention_lora(model) -> bool:
    """True when some LoRA (or other weight patch) already changes the UNet's self-attention queries."""
    return any(".attn1.to_q." in str(key) for key in getattr(model, "patches", {}))


# --- v1 compatibility: rewrite POST /prompt bodies that use v1 inputs on shared node ids ----------

_registered: set[int] = set()


def restack_wrapper(model, wrapper_type: str, key: str, cls: type, extend: Callable) -> None:
    """Replace the pack's keyed ``cls`` wrapper on (an already-cloned) ``model`` by ``extend(previous or None)``.

    Our wrappers are immutable, so stacking builds a new one: clones that hold the previous one keep it."""
    previous = [w for w in model.get_wrappers(wrapper_type, key) if isinstance(w, cls)]
    wrapper = extend(previous[-1] if previous else None)
    model.remove_wrappers_with_key(wrapper_type, key)
    model.add_wrapper_with_key(wrapper_type, key, wrapper)


def prompt_server():
    """ComfyUI's running ``PromptServer`` instance, or None (in-process use, tests, a host without one)."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def add_prompt_handler(handler: Callable[[dict], dict]) -> bool:
    """Register ``handler`` to rewrite every ``POST /prompt`` body; False when no server runs (in-process use)."""
    instance = prompt_server()
    if instance is None or not hasattr(instance, "add_on_prompt_handler"):
        return False
    if id(instance) in _registered:
        return True
    instance.add_on_prompt_handler(handler)
    _registered.add(id(instance))
    logging.getLogger("ipadapter_suite").debug("v1 prompt handler registered")
    return True
