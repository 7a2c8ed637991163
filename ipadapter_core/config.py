"""Access to models_config.yaml (presets, file-name patterns, encoders)."""

from __future__ import annotations

import functools
import os
from typing import Any

import yaml

CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models_config.yaml")


@functools.lru_cache(maxsize=1)
def load_config() -> dict[str, Any]:
    with open(CONFIG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def encoders() -> dict[str, dict[str, Any]]:
    return load_config()["encoders"]


def presets() -> dict[str, dict[str, Any]]:
    return load_config()["presets"]


def preset_names() -> list[str]:
    return list(presets())


# Which encoder-row field gives the width of each encoder output an adapter can consume.
OUTPUT_FIELDS = {"image_embeds": "image_embeds", "siglip_pooled": "pooled", "penultimate_hidden_states": "hidden"}


def _sized(image_size: int | None):
    """Encoder rows in file order, only those of ``image_size`` if given (ViT-L 224 and 336 share widths)."""
    for name, enc in encoders().items():
        if image_size is None or enc.get("image_size") == image_size:
            yield name, enc


def encoder_for_output(output: str, width: int, image_size: int | None = None) -> str | None:
    """Name the encoder whose ``output`` ("image_embeds", "penultimate_hidden_states" or "siglip_pooled") has
    this width. Without ``image_size``, the first such row in models_config.yaml (widths alone cannot tell
    ViT-L 224 from ViT-L 336)."""
    field = OUTPUT_FIELDS.get(output, "hidden")
    for name, enc in _sized(image_size):
        if enc.get(field) == width:
            return name
    return None


def encoder_for_kind(kind: Any) -> str | None:
    """The encoder an adapter kind needs (output, width and image size), or None (plain FaceID)."""
    if not kind.encoder_output:
        return None
    return encoder_for_output(kind.encoder_output, kind.encoder_width, getattr(kind, "image_size", None))


def encoder_from_widths(image_embeds: int, hidden: int, image_size: int | None = None) -> str | None:
    """Name a CLIP vision model from the widths of its two outputs (and its input size, if known)."""
    for name, enc in _sized(image_size):
        if enc["image_embeds"] == image_embeds and enc["hidden"] == hidden:
            return name
    return None
