"""Shared pieces of node declarations: input specs with tooltips, and error attribution."""

from __future__ import annotations

import contextvars
from typing import Any

from ..ipadapter_core.adapter import EMBEDS_SCALING
from ..ipadapter_core.embeds import COMBINE_METHODS
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.weighting import WEIGHT_TYPES

T_WEIGHT = "How strongly the reference image steers the result. 0 = no effect; negative values push away from it."
T_WEIGHT_TYPE = (
    "How the weight is spread over the UNet's layers: curves (linear, ease in/out ...) scale every layer; "
    "style/composition types act only on the layers that carry style or layout; 'precise' types also steer "
    "the negative branch away from the reference at the other layers."
)
T_COMBINE = (
    "How several reference images are merged before projection: concat keeps every image's tokens; add, "
    "subtract (first minus the mean of the rest), average and norm average (each image counts equally) make one."
)
T_SCALING = (
    "Where the weight is applied: 'V only' scales the image attention output (the reference behaviour); "
    "'K+V' also sharpens/softens its attention; the 'C penalty' variants weaken narrow (320/640) layers; "
    "'K+mean(V)' keeps the per-token variation and scales only the mean."
)


def float_input(default: float, lo: float, hi: float, step: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tooltip})


def weight_input(hi: float = 5.0, default: float = 1.0, step: float = 0.05) -> tuple:
    return float_input(default, -1.0, hi, step, T_WEIGHT)


START_AT = float_input(0.0, 0.0, 1.0, 0.001, "Fraction of the sampling steps at which the adapter starts acting.")
END_AT = float_input(1.0, 0.0, 1.0, 0.001, "Fraction of the sampling steps after which the adapter stops acting.")
WEIGHT_TYPE = (WEIGHT_TYPES, {"tooltip": T_WEIGHT_TYPE})
COMBINE = (COMBINE_METHODS, {"tooltip": T_COMBINE})
SCALING = (EMBEDS_SCALING, {"tooltip": T_SCALING})
MODEL = ("MODEL", {"tooltip": "The diffusion model to apply the adapter to. It is cloned, never changed."})
IPADAPTER = ("IPADAPTER", {"tooltip": "The adapter, from 'IPAdapter Unified Loader' or 'IPAdapter Model Loader'."})
IMAGE = ("IMAGE", {"tooltip": "Reference image(s). Non-square images are centre-cropped by the encoder."})
IMAGE_NEGATIVE = ("IMAGE", {"tooltip": "Optional image whose features the result should move away from."})
ATTN_MASK = ("MASK", {"tooltip": "Optional mask: where in the generated image the adapter acts (white = full). Make "
                                 "it at the output's aspect ratio: another one is stretched to fit, with a warning."})
CLIP_VISION = ("CLIP_VISION", {"tooltip": "CLIP vision encoder; overrides the unified loader's. Must match the "
                                          "adapter (ViT-H for most, ViT-bigG for the ViT-G/SDXL base adapters)."})


_running: contextvars.ContextVar[str | None] = contextvars.ContextVar("ipadapter_suite_node", default=None)


def running_node() -> str | None:
    """The display name of the pack's node executing now (None outside one), for messages raised later."""
    return _running.get()


class Node:
    """Base for our nodes: subclasses set DISPLAY_NAME and implement ``run``; errors name the node."""

    DISPLAY_NAME = "IPAdapter"
    FUNCTION = "execute"
    CATEGORY = "ipadapter"

    def execute(self, **kwargs: Any) -> tuple:
        token = _running.set(self.DISPLAY_NAME)
        try:
            return self.run(**kwargs)
        except IPAdapterError as exc:
            raise exc.at(node=self.DISPLAY_NAME) from None
        finally:
            _running.reset(token)

    def run(self, **kwargs: Any) -> tuple:  # pragma: no cover - every node overrides it
        raise NotImplementedError
