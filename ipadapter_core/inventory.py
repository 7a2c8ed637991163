"""What is in a model folder: each file identified by content, read as cheaply as possible.

Safetensors headers are read without loading tensors (shapes become meta tensors, which is all
kind detection needs); pickles are loaded weights-only. Used by the doctor and by error messages
that want to say "this file is actually X".
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import torch

from . import config
from .errors import IPAdapterError
from .kinds import detect_kind
from .loading import PICKLE_EXT, SAFETENSORS_EXT, load_tensor_file, split_adapter_sections

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool,
           "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@dataclass(frozen=True)
class FileReport:
    """One file: what it is (``role``: adapter, clip_vision, lora, other, broken) and details."""

    path: str
    role: str
    summary: str
    kind: str | None = None
    family: str | None = None
    encoder: str | None = None
    needs_lora: bool = False


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
        return _flatten(load_tensor_file(path))
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
    if any(k.startswith(("image_proj.", "ip_adapter.", "adapter_modules.")) for k in shapes):
        try:
            weights = split_adapter_sections(shapes, path)
            kind = detect_kind(weights.image_proj, weights.ip_adapter, name)
        except IPAdapterError as exc:
            return FileReport(path, "broken", exc.problem.splitlines()[0])
        encoder = (config.encoder_for_output(kind.encoder_output, kind.encoder_width)
                   if kind.encoder_output else None)
        needs = f", needs {config.encoders()[encoder]['label']}" if encoder else ""
        face = ", needs InsightFace" if kind.face else ""
        lora = ", pairs with a FaceID LoRA" if kind.needs_lora else ""
        return FileReport(path, "adapter", f"IP-Adapter: {kind.label} ({kind.family_name}){needs}{face}{lora}",
                          kind.kind, kind.family, encoder, kind.needs_lora)
    encoder = clip_vision_encoder(shapes)
    if encoder is not None:
        return FileReport(path, "clip_vision", f"CLIP vision: {config.encoders()[encoder]['label']}",
                          encoder=encoder)
    if any(".lora_down." in k or ".lora_up." in k or "lora_A" in k for k in shapes):
        return FileReport(path, "lora", f"LoRA ({len(shapes)} tensors)")
    return FileReport(path, "other", f"not an IP-Adapter file ({len(shapes)} tensors, e.g. {next(iter(shapes), '-')})")


def clip_vision_encoder(shapes: dict[str, torch.Tensor]) -> str | None:
    """Name a CLIP vision state dict (HF layout) from its projection and hidden widths."""
    proj = shapes.get("visual_projection.weight")
    if proj is None or proj.dim() != 2:
        return None
    return config.encoder_from_widths(int(proj.shape[0]), int(proj.shape[1]))


def scan(folders: list[str], extensions: tuple[str, ...] = SAFETENSORS_EXT + PICKLE_EXT) -> list[FileReport]:
    """Identify every model file under these folders (recursively), sorted by path."""
    reports = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for root, _dirs, files in os.walk(folder, followlinks=True):
            for file in sorted(files):
                if file.lower().endswith(extensions):
                    reports.append(identify(os.path.join(root, file)))
    return sorted(reports, key=lambda r: r.path)
