"""Apply-node variants: batch, tiled, style & composition, precise, Mad Scientist, enhancer, from params."""

from __future__ import annotations

NODES: dict[str, type] = {}
