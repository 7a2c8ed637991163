"""Embeds and image utilities: combine, noise, prep for CLIP vision, save/load embeds."""

from __future__ import annotations

NODES: dict[str, type] = {}
