"""Finding the SigLIP pooling head for a loaded CLIP_VISION (InstantX Flux needs SigLIP's pooled vector).

ComfyUI drops ``vision_model.head.*`` when it loads a SigLIP file and its CLIP_VISION does not
remember the file, so the head is looked up by content: the first file in the clip_vision folders
(the unified loader's file first) that holds a head and the same encoder tensors as the loaded model.
A head file made by ``python -m ipadapter_cli siglip-head`` carries those tensors too.
"""

from __future__ import annotations

import os
import weakref

import torch

from ..ipadapter_core.dit.siglip_head import (
    SiglipPoolingHead,
    build_head,
    encoder_fingerprint,
    matches_encoder,
    read_head_tensors,
)
from ..ipadapter_core.errors import IPAdapterError
from . import host

_heads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_heads(clip_vision) -> int | None:
    """The encoder's attention head count (SigLIP's pooling head uses the same), from its modules."""
    for module in clip_vision.model.modules():
        heads = getattr(module, "heads", None)
        if isinstance(heads, int) and hasattr(module, "q_proj"):
            return heads
    return None


def _candidates(clip_vision_file: str | None) -> list[str]:
    paths = [clip_vision_file] if clip_vision_file else []
    for name in host.list_files("clip_vision"):
        path = host.full_path("clip_vision", name)
        if path and path not in paths and path.lower().endswith((".safetensors", ".sft")):
            paths.append(path)
    return paths


def pooling_head(clip_vision, clip_vision_file: str | None = None) -> SiglipPoolingHead:
    """The head that belongs to ``clip_vision`` (cached per encoder object), or an error saying what to get."""
    head = _heads.get(clip_vision)
    if head is not None:
        return head
    reference = encoder_fingerprint(clip_vision.model.state_dict())
    for path in _candidates(clip_vision_file):
        tensors = read_head_tensors(path)
        if tensors is None or not matches_encoder(path, reference):
            continue
        head = build_head({k: t.float() for k, t in tensors.items()}, heads=encoder_heads(clip_vision),
                          source=f"'{os.path.basename(path)}'")
        _heads[clip_vision] = head
        return head
    raise IPAdapterError(
        "The InstantX Flux adapter needs SigLIP's attention-pooling head (vision_model.head.*), which ComfyUI does "
        "not load, and no file in the clip_vision folders holds it for the connected SigLIP encoder.",
        expected="google/siglip-so400m-patch14-384 model.safetensors (it includes the head) in models/clip_vision, "
        "or a '<name>.head.safetensors' beside your SigLIP file",
        fix="Download https://huggingface.co/google/siglip-so400m-patch14-384/resolve/main/model.safetensors into "
        "models/clip_vision (e.g. as siglip-so400m-patch14-384.safetensors) and load that file; or run "
        "`python -m ipadapter_cli siglip-head <that file>` and put the .head.safetensors it writes in "
        "models/clip_vision.", input="clip_vision")


def pooled(clip_vision, last_hidden_state: torch.Tensor, clip_vision_file: str | None = None) -> torch.Tensor:
    """SigLIP ``pooler_output`` [B, width] from the encoder's post-layernorm tokens [B, L, width] (fp32)."""
    head = pooling_head(clip_vision, clip_vision_file)
    with torch.no_grad():
        return head(last_hidden_state.float().to(head.probe.device)).float().cpu()
