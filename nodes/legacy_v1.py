"""The incumbent's v1 apply nodes (before its 2024-03 rewrite), mapped onto the modern core.

Workflows saved with ComfyUI_IPAdapter_plus up to February 2024 use these ids. Each node keeps the
v1 widget order (so a saved ``widgets_values`` list, or a shorter prefix of it from an older
version, lands on the right widgets) and the v1 meaning of its options (incumbent-v1.md §3.1):

* v1 ``weight_type`` is *how the weight enters attention*, today's ``embeds_scaling``
  (original -> V only, linear -> K+V, channel penalty -> K+mean(V) w/ C penalty), with the same weight
  on every layer (today's weight_type ``linear``), images concatenated;
* ``noise`` > 0 replaces the empty negative with v1's scrambled reference (ipadapter_core.legacy_noise);
* ``unfold_batch`` is the "Batch" behaviour: reference i conditions latent i.

The v1 encoder and embeds nodes are in legacy_embeds.py, the FaceID ones in legacy_faceid.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.limits import MAX_TILES, bounded_int
from . import base, encoding, host, legacy_embeds, legacy_faceid
from .apply_core import adapter_of, apply_embeds, check_model
from .legacy_common import (
    V1_APPLY,
    V1Node,
    no_face,
    split_v1_embeds,
    v1_options,
    v1_pair,
)


class IPAdapterApply(V1Node):
    DISPLAY_NAME = "Apply IPAdapter (v1)"
    DESCRIPTION = ("ComfyUI_IPAdapter_plus v1 'Apply IPAdapter', kept so workflows saved before March 2024 run. "
                   "For new graphs use 'IPAdapter Advanced' (or 'IPAdapter Batch (Adv.)' for unfold_batch).")
    REQUIRED = V1_APPLY + ("unfold_batch",)
    OPTIONAL = ("attn_mask",)

    def run(self, ipadapter, clip_vision, image, model, weight, noise=0.0, weight_type="original", start_at=0.0,
            end_at=1.0, unfold_batch=False, attn_mask=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        no_face(kind, self.DISPLAY_NAME)
        check_model(model, kind)
        opts = v1_options(weight, weight_type, start_at, end_at, unfold_batch)
        cond, uncond = v1_pair(pipeline, kind, image, noise, clip_vision)
        return (apply_embeds(model, pipeline, cond, uncond, opts, attn_mask),)


class IPAdapterApplyEncoded(V1Node):
    DISPLAY_NAME = "Apply IPAdapter from Encoded (v1)"
    DESCRIPTION = "v1 'Apply IPAdapter from Encoded': applies a v1 embeds pair. New graphs: 'IPAdapter Embeds'."
    REQUIRED = ("ipadapter", "embeds", "model", "weight", "weight_type", "start_at", "end_at", "unfold_batch")
    OPTIONAL = ("attn_mask",)
    OVERRIDES = {
        "ipadapter": ("IPADAPTER", {"tooltip": "The adapter the embeds were encoded for."}),
        "embeds": ("EMBEDS", {"tooltip": "A v1 embeds pair from 'Encode IPAdapter Image (v1)'."}),
    }

    def run(self, ipadapter, embeds, model, weight, weight_type="original", start_at=0.0, end_at=1.0,
            unfold_batch=False, attn_mask=None):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        no_face(kind, self.DISPLAY_NAME)
        cond, uncond = split_v1_embeds(embeds)
        if cond.shape[-1] != kind.encoder_width or (kind.uses_hidden_states != (cond.dim() == 3)):
            plus = "on" if kind.uses_hidden_states else "off"
            raise IPAdapterError(
                f"The embeds ({tuple(cond.shape[1:])} per image) do not fit the {kind.label} adapter, which reads "
                f"{kind.encoder_width}-wide {kind.encoder_output}.", input="embeds",
                expected=f"embeds encoded with ipadapter_plus {plus} and the adapter's CLIP vision",
                fix=f"Set ipadapter_plus {plus} on the v1 encoder (it must match the adapter) and re-run.",
            )
        opts = v1_options(weight, weight_type, start_at, end_at, unfold_batch)
        return (apply_embeds(model, pipeline, cond, uncond, opts, attn_mask),)


# --- IPAdapterTilesMasked (incumbent-v1.md §2.16) ------------------------------------------------------

TILE = 224


def _axis(size: int, count: int, tile: int = TILE) -> tuple[int, int]:
    """(tile count, offset) on one axis: a remainder of >= a quarter tile gets its own tile."""
    if size % tile >= tile // 4:
        return count + 1, 0
    return count, (size - tile * count) // 2


def _grid(image: torch.Tensor, n: int, value: float, tile: int = TILE) -> tuple[list, list]:
    """Tiles [t', t', 3] of the first image of a resized batch and their [H, W] masks at ``value``."""
    _, h, w, _ = image.shape
    rows, cols = (h // tile, n) if w < h else (n, w // tile)
    rows, off_y = _axis(h, rows, tile)
    cols, off_x = _axis(w, cols, tile)
    tiles, masks = [], []
    th, tw = tile + off_y, tile + off_x  # v1 counts the offset twice: tiles overlap by it
    for i in range(rows):
        for j in range(cols):
            y0, x0 = i * tile + off_y, j * tile + off_x
            y0, x0 = min(y0, h - th), min(x0, w - tw)  # a tile past the edge moves back to end at it
            y0, x0 = max(y0, 0), max(x0, 0)
            tiles.append(image[0, y0:y0 + th, x0:x0 + tw, :])
            mask = torch.zeros(h, w)
            mask[y0:y0 + th, x0:x0 + tw] = value
            masks.append(mask)
    return tiles, masks


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def v1_tiles(image: torch.Tensor, short_side_tiles: int, tile_weight: float,
             tile: int = TILE) -> tuple[torch.Tensor, torch.Tensor]:
    """v1 masked tiling: (tiles [K, t', t', 3], masks [K, H', W']); overview tiles first when the grid is 2-D."""
    n = int(short_side_tiles)
    _, h, w, _ = image.shape
    if w < h:
        new_w = n * tile
        new_h = h * new_w // w
    else:
        new_h = n * tile
        new_w = w * new_h // h
    resized = _bicubic(image[..., :3].float().movedim(-1, 1), (new_h, new_w)).movedim(1, -1)
    rows = new_h // tile if w < h else n
    cols = n if w < h else new_w // tile
    rows, _ = _axis(new_h, rows, tile)
    cols, _ = _axis(new_w, cols, tile)
    two_d = rows > 1 and cols > 1
    tiles, masks = _grid(resized, n, tile_weight if two_d else 1.0, tile)
    if two_d:
        over_h, over_w = (new_h * tile // new_w, tile) if w < h else (tile, new_w * tile // new_h)
        small = _bicubic(resized.movedim(-1, 1), (over_h, over_w)).movedim(1, -1)
        over_tiles, over_masks = _grid(small, 1, 1.0, tile)
        size = tuple(tiles[0].shape[:2])
        over_tiles = [_bicubic(t.movedim(-1, 0)[None], size)[0].movedim(0, -1) for t in over_tiles]
        over_masks = [_bicubic(m[None, None], (new_h, new_w))[0, 0] for m in over_masks]
        tiles, masks = over_tiles + tiles, over_masks + masks
    return torch.stack(tiles), torch.stack(masks)


class IPAdapterTilesMasked(V1Node):
    DISPLAY_NAME = "IPAdapter Masked Tiles (v1)"
    DESCRIPTION = ("v1 'IPAdapter Masked Tiles': cuts the reference into 224 px tiles and applies one adapter per tile "
                   "with a mask over its region. New graphs: 'IPAdapter Tiled'.")
    REQUIRED = V1_APPLY + ("short_side_tiles", "tile_weight")
    OPTIONAL = ()
    OVERRIDES = {
        "image": ("IMAGE", {"tooltip": "Reference image; only the first of a batch is tiled. Its aspect "
                                    "ratio is imposed on the generated image's regions."}),
        "weight": base.float_input(0.7, -1.0, 3.0, 0.05, base.T_WEIGHT),
        "short_side_tiles": ("INT", {"default": 1, "min": 0, "max": 12, "step": 1, "tooltip": "Tiles along "
                                     "the short side (224 px each). 0 = no tiling (a plain apply)."}),
        "tile_weight": base.float_input(0.6, 0.0, 1.0, 0.05, "Mask value of each tile when the grid has "
                                                "several rows and columns (the overview tile keeps 1.0)."),
    }

    def run(self, ipadapter, clip_vision, image, model, weight=0.7, noise=0.0, weight_type="original", start_at=0.0,
            end_at=1.0, short_side_tiles=1, tile_weight=0.6):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        no_face(kind, self.DISPLAY_NAME)
        check_model(model, kind)
        encoding.check_image(image, "image")
        opts = v1_options(weight, weight_type, start_at, end_at)
        short_side_tiles = bounded_int(short_side_tiles, "short_side_tiles", 0, MAX_TILES)  # may arrive by a link
        if short_side_tiles <= 0:
            cond, uncond = v1_pair(pipeline, kind, image, noise, clip_vision)
            return (apply_embeds(model, pipeline, cond, uncond, opts),)
        tiles, masks = v1_tiles(image, short_side_tiles, tile_weight)
        cond, uncond = v1_pair(pipeline, kind, tiles, noise, clip_vision)
        patched = model.clone()
        for i in range(tiles.shape[0]):
            patched = apply_embeds(patched, pipeline, cond[i:i + 1], uncond[min(i, uncond.shape[0] - 1)][None], opts,
                                   masks[i:i + 1], clone=False)
        return (patched,)


NODES = {
    "IPAdapterApply": IPAdapterApply,
    "IPAdapterApplyEncoded": IPAdapterApplyEncoded,
    "IPAdapterTilesMasked": IPAdapterTilesMasked,
    **legacy_embeds.NODES,
    **legacy_faceid.NODES,
}

# API prompts that still name the v1 encoder 'IPAdapterEncoder' (see legacy_embeds.rewrite_prompt).
host.add_prompt_handler(legacy_embeds.rewrite_prompt)
