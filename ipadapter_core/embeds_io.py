"""Saving and loading encoder embeds (the EMBEDS value) as files.

We write ``.safetensors`` with one tensor ("embeds") and string metadata saying what it is. We read
ours and the incumbent's ``.ipadpt`` files (``torch.save`` of one tensor, i.e. a pickle) with
``weights_only=True``: a pickle that holds anything but tensors is refused before any of it runs, and
no pickle is opened at all on a torch older than ``loading.SAFE_PICKLE_TORCH`` (these folders take
uploads). Listing never raises and never opens a pickle: anything unreadable is simply not listed.
"""

from __future__ import annotations

import json
import os

import torch

from . import __version__, config
from .errors import IPAdapterError
from .files import safetensors_header, walk_files
from .loading import load_weights_only, refuse_untrusted_pickle

FORMAT = "ipadapter-suite/embeds"
TENSOR_KEY = "embeds"
INCUMBENT_EXT = ".ipadpt"
SAFETENSORS_EXT = ".safetensors"
MAX_HEADER = 1 << 16  # our headers are a few hundred bytes; anything bigger is not ours


def describe(embeds: torch.Tensor) -> dict[str, str]:
    """What can be told from the tensor alone: its shape, the encoder output and, if known, the encoder."""
    output = "image_embeds" if embeds.dim() == 2 else "penultimate_hidden_states"
    # Widths alone cannot tell every encoder apart (768: ViT-L at 224 or 336 px; 1152: SigLIP pooled or hidden):
    # name one only when exactly one row fits.
    fits = {config.encoder_for_output(output, int(embeds.shape[-1]), size) for size in (224, 336, 384)} - {None}
    if output == "image_embeds":
        fits |= {config.encoder_for_output("siglip_pooled", int(embeds.shape[-1]))} - {None}
    encoder = fits.pop() if len(fits) == 1 else ""
    return {"shape": json.dumps(list(embeds.shape)), "encoder_output": output, "encoder": encoder}


def check_embeds(embeds: object, input: str = "embeds", source: str = "") -> torch.Tensor:
    """An EMBEDS value must be a non-empty, finite float tensor [N, D] or [N, tokens, D]."""
    where = f"'{source}' holds" if source else "The input is"
    if not isinstance(embeds, torch.Tensor):
        raise IPAdapterError(f"{where} a {type(embeds).__name__}, not an embeds tensor.",
                             expected="embeds from 'IPAdapter Encoder' (a tensor [N, D] or [N, tokens, D])",
                             fix="Connect an EMBEDS output, or pick a file saved by 'IPAdapter Save Embeds'.",
                             input=input)
    if embeds.dim() not in (2, 3) or embeds.numel() == 0 or not embeds.is_floating_point():
        raise IPAdapterError(f"{where} a {embeds.dtype} tensor of shape {tuple(embeds.shape)}.",
                             expected="non-empty float embeds [N, D] (pooled) or [N, tokens, D] (hidden states)",
                             fix="Use embeds from 'IPAdapter Encoder' / 'IPAdapter Save Embeds'.", input=input)
    if not torch.isfinite(embeds).all():
        raise IPAdapterError(f"{where} embeds with NaN or infinite values.", expected="finite numbers",
                             fix="Re-encode the image; the file or the node that made it is broken.", input=input)
    return embeds


def save_embeds(path: str, embeds: torch.Tensor, kind: str = "", kind_label: str = "") -> dict[str, str]:
    """Write ``embeds`` to ``path`` as safetensors with metadata; returns the metadata.

    The file appears whole or not at all: it is written under a temporary name (which Load Embeds does not
    list) and renamed, so a cancelled, crashed or out-of-space save never leaves a truncated embeds file."""
    from safetensors.torch import save_file

    check_embeds(embeds)
    meta = {"format": FORMAT, "version": __version__, **describe(embeds), "kind": kind, "kind_label": kind_label,
            "dtype": str(embeds.dtype).replace("torch.", "")}
    partial = f"{path}.{os.getpid()}.partial"
    try:
        save_file({TENSOR_KEY: embeds.detach().cpu().contiguous()}, partial, metadata=meta)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return meta


def read_header(path: str, limit: int = MAX_HEADER) -> dict | None:
    """The JSON header of a safetensors file, or None if it is not one (reads only the header).

    Any bytes are tolerated (``files.safetensors_header``): a listing calls this on uploads, and one bad
    file must never take the node off the menu."""
    try:
        return safetensors_header(path, limit)[0]
    except Exception:  # OSError, UnreadableHeader, MemoryError ...
        return None


def header_metadata(header: object) -> dict[str, str]:
    """The string metadata of a header (``__metadata__``); anything malformed counts as none."""
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if isinstance(k, str) and isinstance(v, str)}


def is_embeds_file(path: str) -> bool:
    """An incumbent ``.ipadpt`` file, or a safetensors file our Save Embeds wrote (never raises)."""
    lower = path.lower()
    if lower.endswith(INCUMBENT_EXT):
        return True
    if not lower.endswith(SAFETENSORS_EXT):
        return False
    return header_metadata(read_header(path)).get("format") == FORMAT


def list_embeds_files(root: str) -> list[str]:
    """Embeds files under ``root`` (recursively, bounded; see ``files.walk_files``), as sorted paths relative
    to it with '/' separators. Never raises: an unreadable file or folder is left out."""
    found: list[str] = []
    try:
        for full in walk_files(root, (INCUMBENT_EXT, SAFETENSORS_EXT)):
            if is_embeds_file(full):
                found.append(os.path.relpath(full, root).replace(os.sep, "/"))
    except Exception:  # belt and braces: a listing feeds /object_info and must not take the node down
        pass
    return sorted(found)


def load_embeds(path: str) -> tuple[torch.Tensor, dict[str, str]]:
    """Load an embeds file; returns (tensor on CPU, metadata). Only ours and ``.ipadpt`` are accepted."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise IPAdapterError(f"The embeds file '{name}' does not exist.", input="embeds",
                             fix="Refresh ComfyUI (press 'r') and pick the file again; embeds files are read "
                             "from the input folder, and from the output folder when marked [output].")
    lower = name.lower()
    if lower.endswith(INCUMBENT_EXT):
        refuse_untrusted_pickle(name, "embeds")
        return check_embeds(_load_pickle(path, name), "embeds", name), {"format": "ipadpt"}
    if lower.endswith(SAFETENSORS_EXT):
        return _load_safetensors(path, name)
    raise IPAdapterError(f"'{name}' is not an embeds file.", input="embeds",
                         expected="a .safetensors file from 'IPAdapter Save Embeds' or an .ipadpt file",
                         fix="Pick an embeds file from the list.")


def _load_pickle(path: str, name: str) -> object:
    return load_weights_only(
        path, name, input="embeds", expected="an .ipadpt file holding only a tensor (as 'IPAdapter Save Embeds' "
        "writes)",
        fix_refused="Only load embeds files you made yourself; delete this one if you do not know where it came from.",
        fix_broken="The file is truncated or not an embeds file; save the embeds again.",
    )


def _load_safetensors(path: str, name: str) -> tuple[torch.Tensor, dict[str, str]]:
    from safetensors import safe_open

    meta = header_metadata(read_header(path))
    if meta.get("format") != FORMAT:
        raise IPAdapterError(f"'{name}' is a safetensors file but not one 'IPAdapter Save Embeds' wrote.",
                             input="embeds", expected=f"metadata format '{FORMAT}' and one tensor '{TENSOR_KEY}'",
                             fix="Model files go in the models folders and their loaders; pick an embeds file.")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            tensor = f.get_tensor(TENSOR_KEY)
    except Exception as exc:
        raise IPAdapterError(f"'{name}' could not be read: {exc}", input="embeds",
                             expected=f"a complete embeds file with a tensor named '{TENSOR_KEY}'",
                             fix="The file is damaged; save the embeds again.") from None
    return check_embeds(tensor, "embeds", name), meta
