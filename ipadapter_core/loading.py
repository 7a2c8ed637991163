"""Reading adapter files safely.

A model file is untrusted input: ``.bin``/``.pt`` files are pickles, so they are only read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers. That
guard is only as good as the installed torch: ``weights_only`` has public bypasses before 2.6 and
2.10 (CVE-2025-32434, CVE-2026-24747), so pickles from folders anyone can upload to are refused on
older torch (``untrusted_pickles_allowed``); model folders, which only the machine's owner fills,
keep weights-only loading on any supported torch.
Both published containers are accepted: the nested ``.bin`` dict and the flat, prefixed
``.safetensors`` layout, plus XLabs' flat Flux layout, renamed at load time to the same two sections
(diffusers' naming) so everything downstream reads one layout.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass

import torch

from .errors import IPAdapterError

# The first torch whose weights_only unpickler has no published bypass (CVE-2026-24747 fixed in 2.10).
SAFE_PICKLE_TORCH = (2, 10)
SAFETENSORS_EXT = (".safetensors", ".sft")
PICKLE_EXT = (".bin", ".pt", ".pth", ".ckpt", ".ipadpt")

# The Kolors FaceID file calls the attention weights "adapter_modules".
ADAPTER_SECTION_NAMES = ("ip_adapter", "adapter_modules")

# XLabs flux-ip-adapter: ``ip_adapter_proj_model.*`` (the projection) and one K/V pair per double block.
XLABS_PROJ_PREFIX = "ip_adapter_proj_model."
_XLABS_KV = re.compile(r"^double_blocks\.(\d+)\.processor\.ip_adapter_double_stream_([kv])_proj\.(weight|bias)$")

# Key prefixes that mark a flat file as an IP-Adapter (the doctor's cheap first look).
ADAPTER_KEY_PREFIXES = ("image_proj.", *(f"{s}." for s in ADAPTER_SECTION_NAMES), XLABS_PROJ_PREFIX)


@dataclass
class AdapterWeights:
    """An adapter file split into its two sections."""

    image_proj: dict[str, torch.Tensor]
    ip_adapter: dict[str, torch.Tensor]
    path: str = ""


def load_tensor_file(path: str) -> dict:
    """Load a state dict from ``.safetensors`` or a weights-only pickle; refuse everything else.

    (Callers that only need shapes read headers instead: ``inventory.read_shapes``.)
    """
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise IPAdapterError(
            f"The file '{path}' does not exist.",
            fix="Check the path, or pick the file again from the list after refreshing ComfyUI (press 'r').",
        )
    ext = os.path.splitext(path)[1].lower()
    if ext in SAFETENSORS_EXT:
        return _load_safetensors(path, name)
    if ext in PICKLE_EXT:
        return _load_pickle(path, name)
    raise IPAdapterError(
        f"'{name}' has the extension '{ext}', which this pack does not read.",
        expected="a .safetensors file (preferred) or a PyTorch .bin/.pt/.pth file",
        fix="Download the model file in one of those formats.",
    )


def _load_safetensors(path: str, name: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        detail = str(exc)
        hint = ""
        if "HeaderTooLarge" in detail or "header" in detail.lower():
            hint = " The header is unreadable: the download was probably an HTML page or was cut short."
        size = os.path.getsize(path)
        raise IPAdapterError(
            f"'{name}' ({size:,} bytes) is not a valid safetensors file: {detail}.{hint}",
            expected="a complete .safetensors model file",
            fix="Delete the file and download it again (use the file's 'download' link, not the web page).",
        ) from None


def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch; the one place the pack reads it (tests patch this)."""
    match = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def untrusted_pickles_allowed() -> bool:
    """Whether a pickle from a folder anyone may upload to (ComfyUI's input/output) may be read at all."""
    return torch_version() >= SAFE_PICKLE_TORCH


def refuse_untrusted_pickle(name: str, input: str | None = None) -> None:
    """Raise unless this torch's weights-only loading can be trusted with an uploaded pickle."""
    if untrusted_pickles_allowed():
        return
    have = ".".join(map(str, torch_version()))
    need = ".".join(map(str, SAFE_PICKLE_TORCH))
    raise IPAdapterError(
        f"'{name}' is a pickle (PyTorch) file in a folder anyone who reaches this server can upload to, and this "
        f"torch ({have}) has known ways around weights-only loading, so it was not opened.",
        expected=f"a .safetensors embeds file ('IPAdapter Save Embeds' writes them), or torch {need} or newer",
        fix=f"Re-save the embeds with 'IPAdapter Save Embeds' (safetensors), or upgrade torch to {need}+ "
        "(pip install -U torch, with ComfyUI's Python).", input=input,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights_only(path: str, name: str, *, expected: str, fix_refused: str, fix_broken: str,
                      input: str | None = None) -> object:
    """``torch.load(weights_only=True)``: a pickle holding anything but tensors and plain containers is
    refused before any of it runs; every failure becomes an IPAdapterError with the caller's wording."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise IPAdapterError(
            f"'{name}' holds Python objects other than tensors, so it was refused and nothing in it was run "
            f"({_first_line(exc)}).", expected=expected, fix=fix_refused, input=input,
        ) from None
    except Exception as exc:
        raise IPAdapterError(f"'{name}' could not be read as a PyTorch file: {_first_line(exc)}",
                             expected=expected, fix=fix_broken, input=input) from None


def _load_pickle(path: str, name: str) -> dict:
    data = load_weights_only(
        path, name, expected="a weights-only file: tensors in plain dicts/lists (a complete .bin/.pt file)",
        fix_refused="Use the official .safetensors or .bin release of this model; never load model files from "
        "untrusted sources.",
        fix_broken="The file is probably truncated or not a model; download it again.",
    )
    if not isinstance(data, dict):
        raise IPAdapterError(
            f"'{name}' holds a {type(data).__name__}, not a dictionary of tensors.",
            expected="a state dict",
            fix="Check that this is an IP-Adapter model file.",
        )
    return data


def split_adapter_sections(sd: dict, source: str = "") -> AdapterWeights:
    """Return the ``image_proj`` and ``ip_adapter`` sections of a nested or flat state dict."""
    name = os.path.basename(source) or "the adapter"
    image_proj: dict[str, torch.Tensor] = {}
    ip_adapter: dict[str, torch.Tensor] = {}
    if any(isinstance(k, str) and k.startswith(XLABS_PROJ_PREFIX) for k in sd):
        image_proj, ip_adapter = _split_xlabs(sd)
        if not ip_adapter:
            raise IPAdapterError(
                f"{name} looks like an XLabs Flux IP-Adapter (it has {XLABS_PROJ_PREFIX}* weights) but holds none "
                "of its per-block K/V weights.",
                expected="double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj.{weight,bias} for every "
                "double block",
                fix="The file is incomplete or was saved by another tool: download flux-ip-adapter(-v2) again.",
            )
    elif isinstance(sd.get("image_proj"), dict):
        image_proj = dict(sd["image_proj"])
        for section in ADAPTER_SECTION_NAMES:
            if isinstance(sd.get(section), dict):
                ip_adapter = dict(sd[section])
                break
    else:
        for key, value in sd.items():
            if not isinstance(value, torch.Tensor):
                continue
            head, _, rest = key.partition(".")
            if head == "image_proj":
                image_proj[rest] = value
            elif head in ADAPTER_SECTION_NAMES:
                ip_adapter[rest] = value
    if not image_proj or not ip_adapter:
        raise IPAdapterError(
            f"{name} is not an IP-Adapter model: it has no "
            f"{'image_proj' if not image_proj else 'ip_adapter'} weights "
            f"(first keys: {', '.join(list(sd)[:4]) or 'none'}).",
            expected="an IP-Adapter file with image_proj.* and ip_adapter.* weights",
            fix="Checkpoints, LoRAs and CLIP vision files go in their own folders and loaders; put only "
            "IP-Adapter files in models/ipadapter.",
        )
    return AdapterWeights(image_proj=image_proj, ip_adapter=ip_adapter, path=source)


def _split_xlabs(sd: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """XLabs' flat file -> ``image_proj`` {proj, norm} and ``ip_adapter`` {"{i}.to_{k,v}_ip.{weight,bias}"}.

    ``single_blocks.*`` (and anything else) is dropped: no reference loader reads it, and the double
    blocks are the only injection sites.
    """
    image_proj: dict[str, torch.Tensor] = {}
    ip_adapter: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.startswith(XLABS_PROJ_PREFIX):
            image_proj[key[len(XLABS_PROJ_PREFIX):]] = value
        elif (m := _XLABS_KV.match(key)) is not None:
            block, kv, param = m.groups()
            ip_adapter[f"{int(block)}.to_{kv}_ip.{param}"] = value
    return image_proj, ip_adapter


def load_adapter_file(path: str) -> AdapterWeights:
    """Load an IP-Adapter file and split it into its sections."""
    return split_adapter_sections(load_tensor_file(path), path)
