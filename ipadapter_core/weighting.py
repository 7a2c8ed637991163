"""Weight types: how an adapter's weight is spread over the UNet's cross-attention layers.

Two shapes of rule, both keyed by ComfyUI's ``transformer_index`` t:
* curves (linear, ease ...): a factor from t and the depth L (16 SD1.5, 11 SDXL), or from the block type;
* layer tables (style/composition ...): only the listed t act, each with one of the node's weights;
  "precise" types also *swap* the reference to the negative branch at some layers.
Resolved once per application into a per-site ``LayerWeight``; nothing here runs per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import IPAdapterError
from .sites import Site

WEIGHT_TYPES = [
    "linear", "ease in", "ease out", "ease in-out", "reverse in-out", "weak input", "weak output", "weak middle",
    "strong middle", "style transfer", "composition", "strong style transfer", "style and composition",
    "style transfer precise", "composition precise",
]
EXTRA_WEIGHT_TYPES = ["strong style and composition"]
SIMPLE_WEIGHT_TYPES = {"standard": "linear", "prompt is more important": "ease out", "style transfer": "style transfer"}

DEPTH = {"sd15": 16, "sdxl": 11, "kolors": 11}


@dataclass(frozen=True)
class LayerWeight:
    """The resolved weight at one site. ``alt`` = use the composition image's tokens here."""

    weight: float
    swap: bool = False
    alt: bool = False


def _curve(fn: Callable[[float, float], float]) -> Callable[[int, str, int], float]:
    return lambda t, block, depth: fn(t, depth)


CURVES: dict[str, Callable[[int, str, int], float]] = {
    "linear": lambda t, block, depth: 1.0,
    "ease in": _curve(lambda t, d: 0.05 + 0.95 * (1 - t / d)),
    "ease out": _curve(lambda t, d: 0.05 + 0.95 * (t / d)),
    "ease in-out": _curve(lambda t, d: 0.05 + 0.95 * (1 - abs(t - d / 2) / (d / 2))),
    "reverse in-out": _curve(lambda t, d: 0.05 + 0.95 * (abs(t - d / 2) / (d / 2))),
    "weak input": lambda t, block, depth: 0.2 if block == "input" else 1.0,
    "weak output": lambda t, block, depth: 0.2 if block == "output" else 1.0,
    "weak middle": lambda t, block, depth: 0.2 if block == "middle" else 1.0,
    "strong middle": lambda t, block, depth: 1.0 if block == "middle" else 0.2,
}

# Layer tables: t -> (which weight, multiplier). "w" = weight, "c" = composition weight,
# "s" = style boost, "b" = composition boost. SWAPS: layers whose reference goes to the negative.
_SDXL_ALL = range(11)
_SD15_ALL = range(16)


def _table(pairs: Iterable[tuple[Iterable[int], str, float]]) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for ts, src, mult in pairs:
        for t in ts:
            out[t] = (src, mult)
    return out


TABLES: dict[str, dict[str, dict[int, tuple[str, float]]]] = {
    "sdxl": {
        "style transfer": _table([([6], "w", 1)]),
        "composition": _table([([3], "w", 1)]),
        "strong style transfer": _table([([t for t in _SDXL_ALL if t != 3], "w", 1)]),
        "style and composition": _table([([3], "c", 1), ([6], "w", 1)]),
        "strong style and composition": _table([([t for t in _SDXL_ALL if t != 3], "w", 1), ([3], "c", 1)]),
        "style transfer precise": _table([([3], "s", 1), ([6], "w", 1)]),
        "composition precise": _table([([t for t in _SDXL_ALL if t not in (3, 6)], "b", 0.1), ([6], "b", 1),
                                       ([3], "w", 1)]),
    },
    "sd15": {
        "style transfer": _table([(list(range(4)) + list(range(9, 16)), "w", 1)]),
        "composition": _table([([4], "w", 0.25), ([5], "w", 1)]),
        "strong style transfer": _table([([t for t in _SD15_ALL if t not in (4, 5)], "w", 1)]),
        "style and composition": _table([(list(range(4)) + list(range(9, 16)), "w", 1), ([4], "c", 0.25),
                                         ([5], "c", 1)]),
        "strong style and composition": _table([([t for t in _SD15_ALL if t not in (4, 5)], "w", 1),
                                                ([4, 5], "c", 1)]),
        "style transfer precise": _table([(list(range(4)) + list(range(9, 16)), "w", 1), ([4], "s", 0.25),
                                          ([5], "s", 1)]),
        "composition precise": _table([(list(range(4)) + list(range(9, 16)), "b", 1), ([6, 7, 8], "b", 0.1),
                                       ([4], "w", 0.25), ([5], "w", 1)]),
    },
}
TABLES["kolors"] = TABLES["sdxl"]
SWAPS: dict[str, dict[str, Callable[[int], bool]]] = {
    "sdxl": {"style transfer precise": lambda t: t == 3, "composition precise": lambda t: t != 3},
    "sd15": {"style transfer precise": lambda t: t in (4, 5), "composition precise": lambda t: t not in (4, 5)},
}
SWAPS["kolors"] = SWAPS["sdxl"]


def resolve(
    weight_type: str,
    weight: float,
    sites: list[Site],
    family: str,
    *,
    composition_weight: float = 1.0,
    style_boost: float | None = None,
    composition_boost: float | None = None,
    layer_weights: dict[int, float] | None = None,
) -> dict[tuple, LayerWeight]:
    """Per-site weights for one application. Sites a type does not name get weight 0."""
    named = {"weight": weight, "composition weight": composition_weight, "style_boost": style_boost,
             "composition_boost": composition_boost, **{f"layer {k}": v for k, v in (layer_weights or {}).items()}}
    for name, value in named.items():
        if value is not None and not math.isfinite(value):
            raise IPAdapterError(f"The {name} is {value}.", expected="a finite number",
                                 fix="Check the node or primitive feeding it.", input="weight")
    depth = DEPTH.get(family, 16)
    family = family if family in TABLES else "sd15"
    values = {
        "w": weight, "c": composition_weight,
        "s": weight if style_boost is None else style_boost,
        "b": weight if composition_boost is None else composition_boost,
    }
    swap_rule = SWAPS[family].get(weight_type, lambda t: False)
    out: dict[tuple, LayerWeight] = {}
    for site in sites:
        t = site.transformer_index
        if layer_weights is not None:
            w = layer_weights.get(t, 0.0) * weight
            out[site.key] = LayerWeight(w, swap=swap_rule(t))
        elif weight_type in CURVES:
            out[site.key] = LayerWeight(weight * CURVES[weight_type](t, site.block_type, depth))
        elif weight_type in TABLES[family]:
            src, mult = TABLES[family][weight_type].get(t, ("w", 0.0))
            out[site.key] = LayerWeight(values[src] * mult, swap=swap_rule(t), alt=src == "c")
        else:
            raise IPAdapterError(
                f"Unknown weight_type '{weight_type}'.",
                expected=", ".join(WEIGHT_TYPES + EXTRA_WEIGHT_TYPES),
                fix="Pick a weight type from the list.",
                input="weight_type",
            )
    return out


def parse_layer_weights(text: str) -> dict[int, float]:
    """Parse the Mad Scientist ``"idx:value, idx:value"`` string."""
    out: dict[int, float] = {}
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        idx, sep, val = part.partition(":")
        try:
            out[int(idx)] = float(val)
        except ValueError:
            raise IPAdapterError(
                f"'{part}' is not a 'layer:weight' pair.",
                expected="comma-separated pairs like '0:0.5, 6:1.0' (layer = transformer index)",
                fix="Fix the layer_weights text.",
                input="layer_weights",
            ) from None
    return out
