"""What is in a model folder: each file identified by content, read as cheaply as possible.

Only headers are read, never tensors: a safetensors file's JSON header, a pickle's opcodes
(``pickle_header``: nothing is unpickled, imported or called). Shapes become meta tensors, which is
all kind detection needs, so naming a 5 GB InstantX Flux .bin reads a few MB. Any bytes are
tolerated: a file that cannot be read is reported as broken and the scan carries on. Used by the
doctor and by error messages that want to say "this file is actually X".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from . import config
from .errors import IPAdapterError
from .files import UnreadableHeader, safetensors_header, walk_files
from .kinds import detect_kind
from .loading import ADAPTER_KEY_PREFIXES, PICKLE_EXT, SAFETENSORS_EXT, split_adapter_sections
from .pickle_header import read_pickle_tensors

SIGLIP_HEAD = "vision_model.head.probe"  # SigLIP's attention-pooling head, which InstantX Flux needs

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool,
           "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
_PICKLE_DTYPES = {str(t).replace("torch.", ""): t for t in _DTYPES.values()}
MAX_HEADER = 100_000_000  # a safetensors header is at most this long (the format's own limit)
_HEADER_PROBLEMS = {
    "short": "is too short to be a safetensors file.",
    "too large": "has an unreadable safetensors header (HeaderTooLarge): it is probably an HTML page or an "
                 "incomplete download.",
    "corrupt": "has a corrupt safetensors header.",
}


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
    """Tensor names -> meta tensors of the right shape/dtype, from the header only (nothing is unpickled)."""
    name = os.path.basename(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in SAFETENSORS_EXT:
        return {k: _meta(shape, _DTYPES.get(dtype, torch.float32)) for k, (shape, dtype) in
                _safetensors_entries(path, name).items()}
    if ext in PICKLE_EXT:
        try:
            tensors = read_pickle_tensors(path)
        except Exception as exc:  # not a zip/pickle, truncated, or something the reader does not follow
            raise IPAdapterError(f"'{name}' is not a readable PyTorch file ({_first_line(exc)}).",
                                 fix="It is probably truncated or not a model: download it again.") from None
        return {k: _meta(v.shape, _PICKLE_DTYPES.get(v.dtype, torch.float32)) for k, v in tensors.items()}
    raise IPAdapterError(f"'{name}' is not a model file this pack reads.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _meta(shape, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def _safetensors_entries(path: str, name: str) -> dict[str, tuple[list[int], str]]:
    """{tensor: (shape, dtype)} from a safetensors header, after checking every entry's form and extent."""
    try:
        header, length = safetensors_header(path, MAX_HEADER)
    except UnreadableHeader as exc:
        raise IPAdapterError(f"'{name}' {_HEADER_PROBLEMS[exc.reason]}", fix="Download the file again.") from None
    entries, end = {}, 0
    for key, value in header.items():
        if key == "__metadata__":
            continue
        shape = value.get("shape") if isinstance(value, dict) else None
        offsets = value.get("data_offsets") if isinstance(value, dict) else None
        if not (isinstance(shape, list) and len(shape) <= 8 and all(_count(d) for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
                and isinstance(value.get("dtype"), str)):
            raise IPAdapterError(f"'{name}' has a malformed safetensors header (entry '{str(key)[:80]}').",
                                 fix="The file is damaged or was not written by a safetensors library: download "
                                 "it again.")
        entries[key] = (shape, value["dtype"])
        end = max(end, offsets[1])
    size = os.path.getsize(path)
    if 8 + length + end > size:
        raise IPAdapterError(f"'{name}' is truncated: the header promises {8 + length + end:,} bytes, the file "
                             f"has {size:,}.", fix="The download was cut short: download the file again.")
    return entries


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 48


def identify(path: str) -> FileReport:
    """Say what a model file is, by content; never raises (an unreadable file is reported as broken)."""
    try:
        return _identify(path)
    except IPAdapterError as exc:
        return FileReport(path, "broken", f"{exc.problem} {exc.fix or ''}".strip())
    except Exception as exc:  # any bytes at all: the report carries on
        return FileReport(path, "broken", f"could not be read ({type(exc).__name__}: {_first_line(exc)}).")


def _identify(path: str) -> FileReport:
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
    """Every model file under these folders (recursively, bounded, symlink loops cut: ``files.walk_files``),
    by name only (nothing is read)."""
    return [path for folder in folders for path in walk_files(folder, extensions)]

