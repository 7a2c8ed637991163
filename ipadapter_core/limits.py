"""Caps on the work one prompt can ask for, checked once at apply time (never per sampling step).

Every value a node reads may come from a link rather than its widget, including raw JSON on a custom
socket of a prompt posted to a reachable server, so widget limits are re-checked here; and a small
input must not be able to make a huge allocation (a 2 KB weights string once held 1.5 GiB of K/V).
Each cap is far above what a real workflow uses and fails with an error naming the input.
"""

from __future__ import annotations

import math

from .errors import IPAdapterError

MAX_TEXT = 64 * 1024  # characters of a weights / layer-weights string
MAX_ENTRIES = 4096  # numbers in a weights or layer-weights string
MAX_FRAMES = 10_000  # frames of a schedule or a per-frame weight list (the frame widgets stop at 9999)
MAX_SCHEDULE_VALUES = 1 << 30  # float32 values of the image batches a schedule repeats (4 GiB)
MAX_WIDGET_INT = 9999  # the frame widgets' own maximum
MAX_ENCODE_BATCH = 4096  # encode_batch_size's widget maximum
MAX_REGIONS = 64  # regions in one IPADAPTER_PARAMS
MAX_TILES = 12  # short_side_tiles of the v1 masked tiles (its widget maximum)
MAX_KV_BYTES = 4 << 30  # K/V one application may build beyond one row per reference image


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def bounded_int(value: object, input: str, low: int, high: int, what: str = "") -> int:
    """An INT input as the widget would take it: a whole number from ``low`` to ``high``."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if number is None or not low <= number <= high:
        raise IPAdapterError(f"{what or input} is {_show(value)}.", expected=f"a whole number from {low} to {high}",
                             fix="Use the widget, or feed a number in that range.", input=input)
    return number


def bounded_float(value: object, input: str, low: float, high: float, what: str = "") -> float:
    """A FLOAT input as the widget would take it: a finite number from ``low`` to ``high``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise IPAdapterError(f"{what or input} is {_show(value)}.", expected=f"a number from {low:g} to {high:g}",
                             fix="Use the widget, or feed a number in that range.", input=input)
    return float(value)


def bounded_text(value: object, input: str, what: str = "", entries: int | None = MAX_ENTRIES) -> str:
    """A STRING input of at most ``MAX_TEXT`` characters and ``entries`` comma/line-separated entries."""
    if not isinstance(value, str):
        raise IPAdapterError(f"{what or input} is a {type(value).__name__}, not text.", expected="text",
                             fix="Type the values into the widget, or feed a STRING.", input=input)
    if len(value) > MAX_TEXT:
        raise IPAdapterError(f"{what or input} is {len(value):,} characters long.",
                             expected=f"at most {MAX_TEXT:,} characters", fix="Shorten the text.", input=input)
    if entries is not None:
        count = value.count(",") + value.count("\n") + 1
        if count > entries:
            raise IPAdapterError(f"{what or input} has {count:,} entries.", expected=f"at most {entries:,} values",
                                 fix="Use fewer values (a ramp timing makes long schedules from two values).",
                                 input=input)
    return value


def check_frames(count: int, input: str, what: str = "The schedule") -> None:
    if count > MAX_FRAMES:
        raise IPAdapterError(f"{what} has {count:,} frames.", expected=f"at most {MAX_FRAMES:,} frames",
                             fix="Use fewer frames, images or extra start/end frames.", input=input)
