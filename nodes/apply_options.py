"""The options every apply node resolves from its widgets (a plain record, shared by the apply paths)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApplyOptions:
    weight: float = 1.0
    weight_type: str = "linear"
    combine_embeds: str = "concat"
    start_at: float = 0.0
    end_at: float = 1.0
    embeds_scaling: str = "V only"
    unfold: bool = False
    composition_weight: float = 1.0
    style_boost: float | None = None
    composition_boost: float | None = None
    layer_weights: dict[int, float] | None = None
    v_norm: bool = False  # InstantX Flux: the ComfyUI-IPAdapter-Flux reading (values RMS-normalised too)
