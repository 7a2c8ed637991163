"""Tiled references (incumbent.md §5.3): cut a large or non-square reference into 256 px tiles.

CLIP vision centre-crops to a square, so a wide reference loses its sides. The Tiled node instead
cuts it into 256 px tiles (256, not 224: it divides latent sizes more often; the encoder resizes),
applies one adapter per tile, and masks each tile's adapter to the tile's window, so every part of
the reference conditions the matching part of the picture.

Reference layout, as the incumbent does it (so masks land where users expect):
* aspect in (0.75, 1.33): centre-crop to a square, resize to 512x512 (a 2x2 grid);
* otherwise: short side to 256, long side in proportion; beyond 4:1, centre-crop the long side to 1024;
* ``tiles = ceil(side / 256)``, ``overlap = (tiles*256 - side) / (tiles - 1)`` spread evenly.
Images are resized like PrepImageForClipVision's LANCZOS (antialiased bicubic in torch, no 8-bit
round trip); masks with antialiased bicubic, as the incumbent did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import images

TILE = 256


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a prepared reference of ``height`` x ``width`` start (row-major order)."""

    height: int
    width: int
    tiles_x: int
    tiles_y: int
    overlap_x: float
    overlap_y: float
    tile: int = TILE

    @property
    def count(self) -> int:
        return self.tiles_x * self.tiles_y

    def windows(self) -> list[tuple[int, int]]:
        """(top, left) of every tile, row by row; each tile is ``tile`` x ``tile`` (clipped at the edge)."""
        return [(int(y * (self.tile - self.overlap_y)), int(x * (self.tile - self.overlap_x)))
                for y in range(self.tiles_y) for x in range(self.tiles_x)]


def grid_for(height: int, width: int, tile: int = TILE) -> TileGrid:
    """Tile counts and even overlaps covering a ``height`` x ``width`` reference."""
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    overlap_x = max(0.0, (tiles_x * tile - width) / (tiles_x - 1 if tiles_x > 1 else 1))
    overlap_y = max(0.0, (tiles_y * tile - height) / (tiles_y - 1 if tiles_y > 1 else 1))
    return TileGrid(height, width, tiles_x, tiles_y, overlap_x, overlap_y, tile)


@dataclass(frozen=True)
class Layout:
    """How a reference of a given size is brought to its tiled size: crop, resize, crop (each optional)."""

    square: int | None  # centre-crop side before resizing (near-square references)
    resize: tuple[int, int]  # (height, width)
    crop: tuple[int, int] | None  # centre crop after resizing (beyond 4:1)


def layout_for(height: int, width: int, tile: int = TILE) -> Layout:
    ratio = height / width
    if 0.75 < ratio < 1.33:
        return Layout(min(height, width), (2 * tile, 2 * tile), None)
    if height < width:
        resize = (tile, int(tile * width / height))
    else:
        resize = (int(tile * height / width), tile)
    crop = None
    if ratio > 4 or ratio < 0.25:
        crop = (tile, 4 * tile) if height < width else (4 * tile, tile)
    return Layout(None, resize, crop)


def center_crop(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of the last two dims (torchvision's rounding: the extra pixel goes to the end)."""
    h, w = t.shape[-2:]
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return t[..., top:top + height, left:left + width]


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic + antialias resize of ``[N, C, H, W]``, clamped to [0, 1] (bicubic overshoots)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def prepare(image: torch.Tensor, mask: torch.Tensor | None = None, tile: int = TILE, sharpening: float = 0.0):
    """Bring ``image [B,H,W,C]`` and ``mask [M,H,W]`` (default: ones) to the tiled layout.

    Returns new tensors ``(image [B,h,w,C], mask [M,h,w])``; the inputs are not modified.
    ``sharpening`` > 0 applies contrast-adaptive sharpening to the resized image.
    """
    _, h, w, _ = image.shape
    if mask is None:
        mask = torch.ones(1, h, w, dtype=torch.float32)
    m = _resize(mask.float().unsqueeze(1), (h, w))
    x = image.float().permute(0, 3, 1, 2)
    plan = layout_for(h, w, tile)
    if plan.square is not None:
        x, m = center_crop(x, plan.square, plan.square), center_crop(m, plan.square, plan.square)
    x = images.resize(x.permute(0, 2, 3, 1), plan.resize, "LANCZOS").permute(0, 3, 1, 2)
    m = _resize(m, plan.resize)
    if plan.crop is not None:
        x, m = center_crop(x, *plan.crop), center_crop(m, *plan.crop)
    out = images.contrast_adaptive_sharpening(x.permute(0, 2, 3, 1), sharpening).contiguous()
    if out.data_ptr() == image.data_ptr():  # already the tiled size: never hand out the caller's tensor
        out = out.clone()
    return out, m.squeeze(1).contiguous()


def cut(image: torch.Tensor, mask: torch.Tensor, grid: TileGrid) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Tiles ``[B,tile,tile,C]`` and, per tile, a mask ``[M,h,w]``: zero except that tile's window."""
    tiles, masks = [], []
    t = grid.tile
    for top, left in grid.windows():
        tiles.append(image[:, top:top + t, left:left + t, :])
        window = torch.zeros_like(mask)
        window[:, top:top + t, left:left + t] = mask[:, top:top + t, left:left + t]
        masks.append(window)
    return tiles, masks

