"""What is in a model folder: each file identified by content, read as cheaply as possible.

Safetensors headers are read without loading tensors (shapes become meta tensors, which is all
kind detection needs); pickles are loaded weights-only and memory-mapped where the format allows,
so naming a 5 GB InstantX Flux .bin does not read 5 GB. Used by the doctor and by error messages
that want to say "this file is actually X".
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import config
from .errors import IPAdapterError
from .kinds import detect_kind
from .loading import ADAPTER_KEY_PREFIXES, PICKLE_EXT, SAFETENSORS_EXT, load_tensor_file, split_adapter_sections

SIGLIP_HEAD = "vision_model.head.probe"  # SigLIP's attention-pooling head, which InstantX Flux needs

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool,
           "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@dataclass(frozen=True)
class FileReport:
    """One file: what it is (``role``: adapter, clip_vision, lora, other, broken) and details.

    ``label``, ``tokens`` and ``encoder_output`` describe an adapter; ``pooling_head`` says a SigLIP encoder file
    also holds ``vision_model.head.*``.
    """

    path: str
    role: str
    summary: str
    kind: str | None = None
    family: str | None = None
    encoder: str | None = None
    needs_lora: bool = False
    tokens: int | None = None
    encoder_output: str | None = None
    pooling_head: bool = False
    label: str | None = None


def read_shapes(path: str) -> dict[str, torch.Tensor]:
    """Tensor names -> meta tensors of the right shape/dtype, without reading the data."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SAFETENSORS_EXT:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise IPAdapterError(f"'{os.path.basename(path)}' is too short to be a safetensors file.",
                                     fix="Download it again.")
            (length,) = struct.unpack("<Q", head)
            if length > min(os.path.getsize(path), 100_000_000):
                raise IPAdapterError(
                    f"'{os.path.basename(path)}' has an unreadable safetensors header (HeaderTooLarge): it is "
                    "probably an HTML page or an incomplete download.", fix="Download the file again.")
            try:
                header = json.loads(f.read(length))
            except ValueError:
                raise IPAdapterError(f"'{os.path.basename(path)}' has a corrupt safetensors header.",
                                     fix="Download the file again.") from None
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end > os.path.getsize(path):
            raise IPAdapterError(f"'{os.path.basename(path)}' is truncated: the header promises "
                                 f"{8 + length + end:,} bytes, the file has {os.path.getsize(path):,}.",
                                 fix="The download was cut short: download the file again.")
        return {k: torch.empty(v["shape"], dtype=_DTYPES.get(v["dtype"], torch.float32), device="meta")
                for k, v in header.items() if k != "__metadata__"}
    if ext in PICKLE_EXT:
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta")
                for k, v in _flatten(load_tensor_file(path, mmap=True)).items()}
    raise IPAdapterError(f"'{os.path.basename(path)}' is not a model file this pack reads.")


def _flatten(sd: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
    return out


def identify(path: str) -> FileReport:
    """Say what a model file is, by content."""
    name = os.path.basename(path)
    try:
        shapes = read_shapes(path)
    except IPAdapterError as exc:
        return FileReport(path, "broken", f"{exc.problem} {exc.fix or ''}".strip())
    if any(k.startswith(ADAPTER_KEY_PREFIXES) for k in shapes):
        try:
            weights = split_adapter_sections(shapes, path)
            kind = detect_kind(weights.image_proj, weights.ip_adapter, name)
        except IPAdapterError as exc:
            return FileReport(path, "broken", exc.problem.splitlines()[0])
        encoder = config.encoder_for_kind(kind)
        needs = ""
        if encoder:
            enc = config.encoders()[encoder]
            head = ", with its attention-pooling head vision_model.head.*" if kind.encoder_output == "siglip_pooled" \
                else ""
            needs = f", needs {enc['label']} ({enc['file']}{head})"
        face = ", needs InsightFace" if kind.face else ""
        lora = ", pairs with a FaceID LoRA" if kind.needs_lora else ""
        return FileReport(path, "adapter", f"IP-Adapter: {kind.label} ({kind.family_name}){needs}{face}{lora}",
                          kind.kind, kind.family, encoder, kind.needs_lora, kind.tokens, kind.encoder_output,
                          label=kind.label)
    encoder = clip_vision_encoder(shapes)
    if encoder is not None:
        enc = config.encoders()[encoder]
        head = SIGLIP_HEAD in shapes
        note = ""
        if "pooled" in enc:
            note = (" (has the attention-pooling head InstantX Flux needs)" if head else
                    f" (no attention-pooling head: enough for SD3.5 InstantX; InstantX Flux needs {enc['file']} "
                    f"from {enc['url']})")
        return FileReport(path, "clip_vision", f"CLIP vision: {enc['label']}{note}", encoder=encoder,
                          pooling_head=head)
    if any(".lora_down." in k or ".lora_up." in k or "lora_A" in k for k in shapes):
        return FileReport(path, "lora", f"LoRA ({len(shapes)} tensors)")
    return FileReport(path, "other", f"not an IP-Adapter file ({len(shapes)} tensors, e.g. {next(iter(shapes), '-')})")


def _grid(shapes: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """(patches per side, patch size) of a vision transformer, from its position and patch embeddings."""
    pos = shapes.get("vision_model.embeddings.position_embedding.weight")
    patch = shapes.get("vision_model.embeddings.patch_embedding.weight")
    if pos is None or patch is None or pos.dim() != 2 or patch.dim() != 4:
        return None
    for count in (pos.shape[0] - 1, pos.shape[0]):  # CLIP adds a class token, SigLIP does not
        side = math.isqrt(max(count, 0))
        if side and side * side == count:
            return side, int(patch.shape[-1])
    return None


def clip_vision_encoder(shapes: dict[str, torch.Tensor]) -> str | None:
    """Name a CLIP vision / SigLIP state dict (HF layout) from its output widths and its input size.

    A CLIP file has ``visual_projection`` (image_embeds width x hidden width); a SigLIP file has none,
    and ComfyUI's image_embeds for it is the last hidden state, so both widths are the hidden width.
    The patch grid tells encoders of equal widths apart (ViT-L at 224 vs 336 px).
    """
    proj = shapes.get("visual_projection.weight")
    if proj is not None and proj.dim() == 2:
        image_embeds, hidden = int(proj.shape[0]), int(proj.shape[1])
    else:
        norm = shapes.get("vision_model.post_layernorm.weight")
        if norm is None or norm.dim() != 1:
            return None
        image_embeds = hidden = int(norm.shape[0])
    grid = _grid(shapes)
    if grid is None:
        return config.encoder_from_widths(image_embeds, hidden)
    side, patch = grid
    for enc in config.encoders().values():
        if enc.get("image_size", 224) // patch == side:
            found = config.encoder_from_widths(image_embeds, hidden, enc.get("image_size", 224))
            if found is not None:
                return found
    return None


def model_files(folders: list[str], extensions: tuple[str, ...] = SAFETENSORS_EXT + PICKLE_EXT) -> list[str]:
    """Every model file under these folders (recursively), by name only (nothing is read)."""
    paths = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for root, _dirs, files in os.walk(folder, followlinks=True):
            paths += [os.path.join(root, file) for file in sorted(files) if file.lower().endswith(extensions)]
    return paths


def scan(folders: list[str], extensions: tuple[str, ...] = SAFETENSORS_EXT + PICKLE_EXT,
         progress: Callable[[], None] | None = None) -> list[FileReport]:
    """Identify every model file under these folders (recursively), sorted by path.

    ``progress()`` is called after each file: pickles are loaded to be identified, which takes a while for
    large ones (the caller's bar; it may raise to cancel)."""
    reports = []
    for path in model_files(folders, extensions):
        reports.append(identify(path))
        if progress is not None:
            progress()
    return sorted(reports, key=lambda r: r.path)
