"""Checking the structured inputs of the apply variants: layer-weight strings and regional params."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import IPAdapterError
from .schedules import PARAMS_KEYS  # the IPADAPTER_PARAMS layout 'IPAdapter Regional Conditioning' writes
from .weighting import parse_layer_weights


def layer_weights(text: str | None, layers: Iterable[int]) -> dict[int, float] | None:
    """``"idx:value, ..."`` -> {transformer index: value}, or None when empty (the weight type applies).

    An index the model does not have is a mistake (the incumbent ignored it silently, so a typo
    meant "no effect" with no hint why).
    """
    if text is None or not text.strip():
        return None
    parsed = parse_layer_weights(text)
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
    entries = [ParamsEntry(*(lists[k][i] for k in PARAMS_KEYS)) for i in range(lengths["image"])]
    entries = [e for e in entries if e.image is not None]
    if not entries:
        raise IPAdapterError(
            "The regional params hold no image.", expected="at least one region with an image",
            fix="Connect an image to 'IPAdapter Regional Conditioning'.", input="ipadapter_params",
        )
    return entries
