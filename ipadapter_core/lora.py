"""The FaceID LoRA: the copy embedded in the adapter file, and pairing a separate LoRA file by content.

FaceID and FaceID-Plus were trained with a LoRA on every attention layer of the UNet. The
reference implementation applies the copy inside the ``.bin`` (``{i}.to_q_lora.down.weight``, one
``i`` per attention processor); ComfyUI cannot read those keys, so they are renamed here to its
generic ``diffusion_model.<path>.lora_down.weight`` form. The separate ``*_lora.safetensors`` files
use kohya keys over diffusers names; a file is paired with an adapter when its layers fit the
adapter's UNet (context width from attn2's to_k, and the per-block widths), before any file-name
guess. Plain tensors and strings: no ComfyUI here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import IPAdapterError

EMBEDDED_KEY = re.compile(r"^(\d+)\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
KOHYA_KEY = re.compile(r"^lora_unet_(.+)_(attn[12])_(to_q|to_k|to_v|to_out_0)\.(lora_down|lora_up|alpha)(?:\.weight)?$")
_UPDOWN_BLOCK = re.compile(r"^(down|up)_blocks_(\d+)_attentions_(\d+)_transformer_blocks_(\d+)$")
_MID_BLOCK = re.compile(r"^mid_block_attentions_(\d+)_transformer_blocks_(\d+)$")
_LDM_PROJ = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}
FAMILY_BY_CONTEXT = {768: "SD1.5", 2048: "SDXL"}


def has_embedded_lora(ip_adapter: dict[str, torch.Tensor]) -> bool:
    return "0.to_q_lora.down.weight" in ip_adapter


def embedded_lora_blocks(ip_adapter: dict[str, torch.Tensor]) -> int:
    """How many transformer blocks (attn1+attn2 pairs) the embedded LoRA covers."""
    procs = [int(m.group(1)) for m in map(EMBEDDED_KEY.match, ip_adapter) if m]
    return max(procs) // 2 + 1 if procs else 0


def convert_embedded_lora(ip_adapter: dict[str, torch.Tensor], block_paths: list[str]) -> dict[str, torch.Tensor]:
    """Embedded LoRA -> ComfyUI-loadable keys.

    ``block_paths`` are the UNet's transformer blocks (``input_blocks.1.1.transformer_blocks.0`` ...)
    in diffusers processor order (down, up, mid); processor ``i`` is attn1 of block ``i // 2`` when
    even, attn2 when odd. The tensors are shared, not copied.
    """
    blocks = embedded_lora_blocks(ip_adapter)
    if blocks == 0:
        raise IPAdapterError("This adapter file carries no LoRA weights.",
                             expected="a FaceID or FaceID-Plus .bin (they embed their LoRA)",
                             fix="Choose 'lora file' as the LoRA source, or 'none'.", input="lora_source")
    if blocks != len(block_paths):
        raise IPAdapterError(
            f"The adapter's embedded LoRA covers {blocks} transformer blocks but the model has {len(block_paths)}.",
            expected="the base model the FaceID adapter was made for",
            fix="Use a checkpoint of the adapter's family (SD1.5 or SDXL).", input="model",
        )
    out: dict[str, torch.Tensor] = {}
    for key, tensor in ip_adapter.items():
        m = EMBEDDED_KEY.match(key)
        if m is None:
            continue
        proc, proj, direction = int(m.group(1)), m.group(2), m.group(3)
        attn = "attn1" if proc % 2 == 0 else "attn2"
        out[f"diffusion_model.{block_paths[proc // 2]}.{attn}.{_LDM_PROJ[proj]}.lora_{direction}.weight"] = tensor
    return out


def _block_order(block: str) -> tuple[int, ...] | None:
    """Diffusers processor order of a kohya block name: down blocks, then up blocks, then the middle."""
    m = _UPDOWN_BLOCK.match(block)
    if m:
        return (0 if m.group(1) == "down" else 1, int(m.group(2)), int(m.group(3)), int(m.group(4)))
    m = _MID_BLOCK.match(block)
    if m:
        return (2, 0, int(m.group(1)), int(m.group(2)))
    return None


@dataclass(frozen=True)
class LoraLayout:
    """What a kohya UNet LoRA's keys and shapes say about it."""

    context_dim: int | None  # in-width of attn2's to_k: the UNet family's text context
    widths: tuple[int, ...]  # per transformer block in diffusers order: the attention width
    rank: int
    attention_only: bool  # only attn1/attn2 q/k/v/out (the FaceID LoRAs); style LoRAs also touch ff/proj

    @property
    def family(self) -> str:
        return FAMILY_BY_CONTEXT.get(self.context_dim or 0, f"context {self.context_dim}")


def describe_lora(shapes: dict[str, tuple[int, ...]]) -> LoraLayout | None:
    """Read a kohya UNet LoRA's layout from its key names and shapes; None if it is not one."""
    blocks: dict[tuple[int, ...], int] = {}
    context, rank, others = None, 0, 0
    for key, shape in shapes.items():
        m = KOHYA_KEY.match(key)
        if m is None:
            others += 1
            continue
        order = _block_order(m.group(1))
        if order is None or m.group(4) == "alpha":
            others += order is None
            continue
        if m.group(4) == "lora_down":
            rank = max(rank, shape[0])
            if m.group(2) == "attn2" and m.group(3) == "to_k":
                context = shape[1]
            if m.group(2) == "attn1" and m.group(3) == "to_q":
                blocks[order] = shape[1]
    if not blocks:
        return None
    widths = tuple(blocks[k] for k in sorted(blocks))
    return LoraLayout(context, widths, rank, others == 0)


def adapter_widths(ip_adapter: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Per cross-attention site (diffusers order) the attention width the adapter's K/V project to."""
    widths, n = [], 1
    while f"{n}.to_k_ip.weight" in ip_adapter:
        widths.append(int(ip_adapter[f"{n}.to_k_ip.weight"].shape[0]))
        n += 2
    return tuple(widths)


def fits_adapter(layout: LoraLayout, context_dim: int, widths: tuple[int, ...]) -> bool:
    """True when a LoRA was made for the same UNet layout as the adapter (family and every block)."""
    return layout.context_dim == context_dim and layout.widths == tuple(widths)


def first_block_key() -> tuple[str, str]:
    """(embedded key, kohya key suffix) of one tensor both LoRA copies hold, to recognise an exact pair."""
    return "0.to_q_lora.down.weight", "_attn1_to_q.lora_down.weight"


def kohya_first_block(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The kohya key of the first block's attn1 to_q down weight (diffusers order), if present."""
    best: tuple | None = None
    found = None
    for key in shapes:
        m = KOHYA_KEY.match(key)
        if m and m.group(2) == "attn1" and m.group(3) == "to_q" and m.group(4) == "lora_down":
            order = _block_order(m.group(1))
            if order is not None and (best is None or order < best):
                best, found = order, key
    return found


@dataclass(frozen=True)
class LoraChoice:
    name: str
    reason: str


def choose_lora(layouts: dict[str, LoraLayout | None], context_dim: int, widths: tuple[int, ...],
                name_matches: list[str], exact: set[str] | None = None) -> LoraChoice | None:
    """Pick the paired LoRA: content first (exact copy of the embedded LoRA, then attention-only
    layout fitting the adapter), then the preset's file-name patterns (``name_matches``, best first)."""
    fitting = [n for n, lay in sorted(layouts.items()) if lay is not None and fits_adapter(lay, context_dim, widths)]
    for name in fitting:
        if exact and name in exact:
            return LoraChoice(name, "its weights equal the LoRA embedded in the adapter")
    attention_only = [n for n in fitting if layouts[n].attention_only]
    pool = attention_only or fitting
    if pool:
        named = [n for n in name_matches if n in pool]
        pick = named[0] if named else pool[0]
        family = FAMILY_BY_CONTEXT.get(context_dim, str(context_dim))
        extra = f"; {len(pool)} LoRAs fit, the file name decided" if len(pool) > 1 else ""
        return LoraChoice(pick, f"its layers fit the adapter's {family} UNet{extra}")
    unreadable = [n for n in name_matches if layouts.get(n) is None]
    if unreadable:
        return LoraChoice(unreadable[0], "its file name matches the preset (content not readable)")
    return None
