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


def encoder_for_output(output: str, width: int) -> str | None:
    """Name the encoder whose ``output`` ("image_embeds" or "penultimate_hidden_states") has this width."""
    field = "image_embeds" if output == "image_embeds" else "hidden"
    for name, enc in encoders().items():
        if enc[field] == width:
            return name
    return None


def encoder_from_widths(image_embeds: int, hidden: int) -> str | None:
    """Name a CLIP vision model from the widths of its two outputs."""
    for name, enc in encoders().items():
        if enc["image_embeds"] == image_embeds and enc["hidden"] == hidden:
            return name
    return None
