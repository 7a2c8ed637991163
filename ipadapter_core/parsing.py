"""Checking the structured inputs of the apply variants: layer-weight strings and regional params."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import IPAdapterError
from .limits import MAX_FRAMES, MAX_REGIONS, bounded_float, bounded_text
from .schedules import PARAMS_KEYS  # the IPADAPTER_PARAMS layout 'IPAdapter Regional Conditioning' writes
from .weighting import EXTRA_WEIGHT_TYPES, WEIGHT_TYPES, parse_layer_weights


def layer_weights(text: str | None, layers: Iterable[int]) -> dict[int, float] | None:
    """``"idx:value, ..."`` -> {transformer index: value}, or None when empty (the weight type applies).

    An index the model does not have is a mistake (the incumbent ignored it silently, so a typo
    meant "no effect" with no hint why).
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parsed = parse_layer_weights(bounded_text(text, "layer_weights"))
    available = sorted(set(layers))
    unknown = sorted(i for i in parsed if i not in available)
    if unknown:
        raise IPAdapterError(
            f"Layer {', '.join(map(str, unknown))} does not exist in this model.",
            expected=f"transformer indices {available[0]}..{available[-1]} (SD1.5: 0..15, SDXL: 0..10; "
            "the middle block is 6 on SD1.5 and 4 on SDXL)" if available else "a model with cross-attention",
            fix="Fix the indices in layer_weights.", input="layer_weights",
        )
    return parsed


@dataclass(frozen=True)
class ParamsEntry:
    """One region of 'IPAdapter Regional Conditioning': its image and how to apply it."""

    image: Any
    attn_mask: Any
    weight: Any
    weight_type: str
    start_at: float
    end_at: float


def params_entries(params: Any) -> list[ParamsEntry]:
    """The IPADAPTER_PARAMS dict (six parallel lists) as entries; entries without an image are skipped."""
    if not isinstance(params, dict) or any(k not in params for k in PARAMS_KEYS):
        raise IPAdapterError(
            "The ipadapter_params value is not regional params.",
            expected=f"the output of 'IPAdapter Regional Conditioning' or 'IPAdapter Combine Params' "
            f"(a dict with {', '.join(PARAMS_KEYS)})",
            fix="Connect a Regional Conditioning (or Combine Params) node to ipadapter_params.",
            input="ipadapter_params",
        )
    lists = {k: params[k] if isinstance(params[k], (list, tuple)) else [params[k]] for k in PARAMS_KEYS}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise IPAdapterError(
            "The regional params lists have different lengths: "
            + ", ".join(f"{k}={n}" for k, n in lengths.items()) + ".",
            expected="one value per region in every list",
            fix="Build the params with 'IPAdapter Regional Conditioning' and 'IPAdapter Combine Params' only.",
            input="ipadapter_params",
        )
    if lengths["image"] > MAX_REGIONS:
        raise IPAdapterError(f"The regional params hold {lengths['image']} regions.",
                             expected=f"at most {MAX_REGIONS} regions", fix="Use fewer regions.",
                             input="ipadapter_params")
    entries = [ParamsEntry(*(lists[k][i] for k in PARAMS_KEYS)) for i in range(lengths["image"])]
    entries = [_checked(e, i) for i, e in enumerate(entries, 1) if e.image is not None]
    if not entries:
        raise IPAdapterError(
            "The regional params hold no image.", expected="at least one region with an image",
            fix="Connect an image to 'IPAdapter Regional Conditioning'.", input="ipadapter_params",
        )
    return entries


def _checked(entry: ParamsEntry, index: int) -> ParamsEntry:
    """One region's values checked like the Regional Conditioning widgets that normally make them (params may
    arrive as raw JSON on the socket)."""
    what = f"Region {index}'s"
    if not isinstance(entry.image, torch.Tensor):
        raise IPAdapterError(f"{what} image is a {type(entry.image).__name__}.", expected="an IMAGE",
                             fix="Build the params with 'IPAdapter Regional Conditioning'.", input="ipadapter_params")
    if entry.attn_mask is not None and not isinstance(entry.attn_mask, torch.Tensor):
        raise IPAdapterError(f"{what} mask is a {type(entry.attn_mask).__name__}.", expected="a MASK or nothing",
                             fix="Build the params with 'IPAdapter Regional Conditioning'.", input="ipadapter_params")
    if entry.weight_type not in WEIGHT_TYPES + EXTRA_WEIGHT_TYPES:
        raise IPAdapterError(f"{what} weight_type is {str(entry.weight_type)[:80]!r}.",
                             expected=", ".join(WEIGHT_TYPES), fix="Pick a weight type in the Regional Conditioning "
                             "node.", input="ipadapter_params")
    weight = entry.weight
    if isinstance(weight, (list, tuple)):
        if not weight or len(weight) > MAX_FRAMES:
            raise IPAdapterError(f"{what} weight list has {len(weight)} values.",
                                 expected=f"1 to {MAX_FRAMES} per-frame weights", fix="Check the node feeding the "
                                 "weight.", input="ipadapter_params")
        weight = [bounded_float(w, "ipadapter_params", -1e4, 1e4, f"{what} weight") for w in weight]
    elif not isinstance(weight, torch.Tensor):
        weight = bounded_float(weight, "ipadapter_params", -1e4, 1e4, f"{what} weight")
    start = bounded_float(entry.start_at, "ipadapter_params", 0.0, 1.0, f"{what} start_at")
    end = bounded_float(entry.end_at, "ipadapter_params", 0.0, 1.0, f"{what} end_at")
    return ParamsEntry(entry.image, entry.attn_mask, weight, entry.weight_type, start, end)
