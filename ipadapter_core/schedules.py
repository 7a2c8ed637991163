"""Per-frame weight schedules (IPAdapter Weights, incumbent §4.10) and regional params lists.

Numeric compatibility: for every timing name the values are the incumbent's, including its
naming: ``ease_in`` is ``sin(pi/2 t)`` (an ease-*out* shape) and ``ease_out`` is
``1 - cos(pi/2 t)`` (an ease-*in* shape). Saved animation workflows depend on those curves, so
the names keep their old meaning.

Fixed: a one-frame transition (end_frame - start_frame == 1) no longer divides by zero (it is the
end value); an empty transition no longer raises IndexError; ``random`` uses a local generator
seeded from the settings (same settings, same schedule; the global ``random`` state is untouched);
``weights_invert`` is the cross-fade partner ``max + min - w`` frame by frame (the incumbent
reversed the list, which equals this for a single symmetric ramp but misaligns padded, batched
or asymmetric schedules); shift/alternate batches with fewer than two images are refused.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass

import torch

from .errors import IPAdapterError
from .limits import MAX_FRAMES, MAX_SCHEDULE_VALUES, MAX_WIDGET_INT, bounded_int, bounded_text, check_frames

TIMINGS = ["custom", "linear", "ease_in_out", "ease_in", "ease_out", "random"]
METHODS = ["full batch", "shift batches", "alternate batches"]
PARAMS_KEYS = ("image", "attn_mask", "weight", "weight_type", "start_at", "end_at")


@dataclass(frozen=True)
class Strategy:
    """The settings of IPAdapter Weights; ``as_dict`` is the WEIGHTS_STRATEGY value (incumbent keys)."""

    weights: str = "1.0, 0.0"
    timing: str = "linear"
    frames: int = 0
    start_frame: int = 0
    end_frame: int = 9999
    add_starting_frames: int = 0
    add_ending_frames: int = 0
    method: str = "full batch"
    frame_count: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: object) -> Strategy:
        if not isinstance(value, dict) or not {"weights", "timing", "frames"} <= set(value):
            raise IPAdapterError("This is not a weights strategy.", input="weights_strategy",
                                 expected="the weights_strategy output of 'IPAdapter Weights'",
                                 fix="Connect the weights_strategy output of an 'IPAdapter Weights' node.")
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in value.items() if k in fields}).checked("weights_strategy")

    def checked(self, input: str | None = None) -> Strategy:
        """The same settings, each checked like its widget (a strategy may arrive as raw JSON on its socket).

        ``input`` names the socket the whole strategy came through; without it each field is its own input."""
        def where(field: str) -> tuple[str, str]:
            return (input or field), (f"The strategy's '{field}'" if input else f"'{field}'")

        for name, options in (("timing", TIMINGS), ("method", METHODS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                at, what = where(name)
                raise IPAdapterError(f"{what} is {str(value)[:80]!r}.", expected=", ".join(options),
                                     fix="Pick a value from the list.", input=at)
        at, what = where("weights")
        bounded_text(self.weights, at, what)
        ints = {}
        for name in ("frames", "start_frame", "end_frame", "add_starting_frames", "add_ending_frames", "frame_count"):
            at, what = where(name)
            ints[name] = bounded_int(getattr(self, name), at, 0, MAX_FRAMES if name == "frame_count" else
                                     MAX_WIDGET_INT, what)
        return Strategy(self.weights, self.timing, method=self.method, **ints)


def parse_weights(text: str) -> list[float]:
    """Numbers separated by commas or newlines; blanks are skipped (at most ``limits.MAX_ENTRIES``)."""
    values = []
    for part in bounded_text(text, "weights").replace("\n", ",").split(","):
        if not part.strip():
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise IPAdapterError(f"'{part.strip()}' in the weights is not a number.", input="weights",
                                 expected="numbers separated by commas or new lines, e.g. '1.0, 0.0'",
                                 fix="Remove the text that is not a number.") from None
    return values


def _curve_value(timing: str, start: float, end: float, t: float) -> float:
    if timing == "linear":
        return start + (end - start) * t
    if timing == "ease_in_out":
        return start + (end - start) * (1 - math.cos(t * math.pi)) / 2
    if timing == "ease_in":  # incumbent naming kept: this is an ease-out shape
        return start + (end - start) * math.sin(t * math.pi / 2)
    if timing == "ease_out":  # incumbent naming kept: this is an ease-in shape
        return start + (end - start) * (1 - math.cos(t * math.pi / 2))
    raise IPAdapterError(f"Unknown timing '{timing}'.", expected=", ".join(TIMINGS), fix="Pick a timing from the list.",
                         input="timing")


def _rng(s: Strategy) -> random.Random:
    digest = hashlib.sha256(repr(s.as_dict()).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def curve(s: Strategy) -> list[float]:
    """One block of weights: the parsed list (custom), or a start->end ramp over ``frames`` frames."""
    weights = parse_weights(s.weights)
    if s.timing == "custom":
        return weights or [0.0]
    if s.timing not in TIMINGS:
        _curve_value(s.timing, 0, 0, 0)  # raises the unknown-timing error
    frames = max(int(s.frames), 2)
    start, end = (weights[0], weights[-1]) if weights else (0.0, 1.0)
    end_frame = min(int(s.end_frame), frames)
    duration = end_frame - int(s.start_frame)
    out = [start] * max(int(s.start_frame), 0)
    rng = _rng(s) if s.timing == "random" else None
    for i in range(duration):
        if rng is not None:
            out.append(rng.uniform(start, end))
        else:
            out.append(_curve_value(s.timing, start, end, i / (duration - 1) if duration > 1 else 1.0))
    if out and s.timing != "random":
        out[-1] = end
    if end_frame < frames:
        out.extend([end] * (frames - end_frame))
    return out or [0.0]


def invert(weights: list[float]) -> list[float]:
    """The cross-fade partner of a schedule, frame by frame, within its own range: max + min - w."""
    if not weights:
        return []
    hi, lo = max(weights), min(weights)
    return [hi + lo - w for w in weights]


def schedule(s: Strategy, image: torch.Tensor | None = None):
    """Apply a strategy; returns (weights, weights_invert, total_frames, image_1, image_2)."""
    if s.method not in METHODS:
        raise IPAdapterError(f"Unknown method '{s.method}'.", expected=", ".join(METHODS),
                             fix="Pick a method from the list.", input="method")
    weights = curve(s)
    block = len(weights)
    check_frames(block, "weights", "One block of the schedule")
    image_1 = image_2 = None
    if image is not None:
        n = image.shape[0]
        if n == 0:
            raise IPAdapterError("The image batch is empty.", expected="at least one image", input="image",
                                 fix="Connect a non-empty image batch, or disconnect the input.")
        _check_size(s, block, image)
        if s.method != "full batch" and n < 2:
            raise IPAdapterError(f"'{s.method}' cross-fades between consecutive images but the batch has 1 image.",
                                 expected="a batch of at least 2 images", input="image",
                                 fix="Batch several images (e.g. 'Image Batch'), or use 'full batch'.")
        if s.method == "shift batches":
            image_1, image_2 = image[:-1], image[1:]
            weights = weights * image_1.shape[0]
        elif s.method == "alternate batches":
            weights, image_1, image_2 = _alternate(weights, image)
        else:
            weights = weights * n
            image_1 = image
        image_1 = image_1.repeat_interleave(block, 0)
        image_2 = image_2.repeat_interleave(block, 0) if image_2 is not None else None
        weights, image_1, image_2 = _pad(weights, image, image_1, image_2, s.add_starting_frames, s.add_ending_frames)
    return weights, invert(weights), len(weights), image_1, image_2


def _check_size(s: Strategy, block: int, image: torch.Tensor) -> None:
    """Refuse, before anything is repeated, a schedule whose frames or image batches would be too large."""
    n = int(image.shape[0])
    frames = block * (n - 1 if s.method == "shift batches" else n) + max(int(s.add_starting_frames), 0) \
        + max(int(s.add_ending_frames), 0)
    check_frames(frames, "image")
    values = frames * math.prod(int(d) for d in image.shape[1:]) * (1 if s.method == "full batch" else 2)
    if values > MAX_SCHEDULE_VALUES:
        raise IPAdapterError(
            f"The schedule's image batches would hold {frames:,} frames of {tuple(image.shape[1:])} "
            f"({values * 4 / 2**30:.1f} GiB).", expected=f"at most {MAX_SCHEDULE_VALUES * 4 / 2**30:.0f} GiB of "
            "images", fix="Use fewer or smaller images, or fewer frames per image.", input="image")


def _alternate(weights: list[float], image: torch.Tensor):
    """Even images on image_1, odd on image_2; every other block runs the inverted ramp (incumbent)."""
    lo, hi = min(weights), max(weights)
    image_1 = image[::2].repeat_interleave(2, 0)[1:]
    image_2 = image[1::2].repeat_interleave(2, 0)
    out = (weights + [hi - (w - lo) for w in weights]) * (image_1.shape[0] // 2)
    if image.shape[0] % 2:
        image_1 = image_1[:-1]
    else:
        image_2 = image_2[:-1]
        out = out + weights
    return out, image_1, image_2


def _pad(weights, image, image_1, image_2, add_start: int, add_end: int):
    if add_start > 0:
        weights = [weights[0]] * add_start + weights
        first = image[:1].repeat(add_start, 1, 1, 1)
        image_1 = torch.cat([first, image_1])
        image_2 = torch.cat([first, image_2]) if image_2 is not None else None
    if add_end > 0:
        weights = weights + [weights[-1]] * add_end
        last = image[-1:].repeat(add_end, 1, 1, 1)
        image_1 = torch.cat([image_1, last])
        image_2 = torch.cat([image_2, last]) if image_2 is not None else None
    return weights, image_1, image_2


def prompt_schedule(s: Strategy, prompt: str) -> str:
    """FizzNodes BatchPromptSchedule lines ``"frame": "prompt",``: one per image, at the start of its block.

    The block length is the real one (the incumbent used the raw ``frames`` widget, so with frames=0
    or custom timing every prompt landed on frame 0). Quotes in prompts are escaped.
    """
    lines = [p for p in str(prompt).split("\n") if p.strip()]
    count = int(s.frame_count)
    if not lines or count <= 0:
        return ""
    lines = (lines + [lines[-1]] * count)[:count]
    lines = [p.replace("\\", "\\\\").replace('"', '\\"') for p in lines]
    block = len(curve(s))
    offset = int(s.add_starting_frames)
    out = []
    if offset > 0:
        out.append(f'"0": "{lines[0]}",')
    out += [f'"{i * block + offset}": "{p}",' for i, p in enumerate(lines)]
    if s.add_ending_frames > 0:
        out.append(f'"{count * block + offset}": "{lines[-1]}",')
    return "".join(line + "\n" for line in out)


def as_list(value: object) -> list:
    """A FLOAT input that may be a scalar or a per-frame list (from IPAdapter Weights)."""
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.reshape(-1)]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def regional_params(image, mask, weight: float, weight_type: str, start_at: float, end_at: float) -> dict:
    """One region's IPADAPTER_PARAMS (the incumbent's format, consumed by 'IPAdapter from Params')."""
    return {"image": [image], "attn_mask": [mask], "weight": [weight], "weight_type": [weight_type],
            "start_at": [start_at], "end_at": [end_at]}


def combine_params(*params: dict | None) -> dict:
    """Concatenate IPADAPTER_PARAMS lists (None parts are skipped); inputs are never modified.

    Keys beyond the incumbent's six (a newer producer's) are kept, padded with None for parts that
    lack them, so every list stays aligned with ``image``.
    """
    for i, p in enumerate(params, 1):
        if p is not None:
            _check_params(p, i)
    parts = [p for p in params if p is not None]
    keys = list(PARAMS_KEYS) + sorted({k for p in parts for k in p} - set(PARAMS_KEYS))
    return {k: [v for p in parts for v in p.get(k, [None] * len(p["image"]))] for k in keys}


def _check_params(p: object, i: int) -> None:
    ok = isinstance(p, dict) and all(isinstance(p.get(k), list) for k in PARAMS_KEYS)
    if ok:
        lengths = {len(v) for v in p.values() if isinstance(v, list)}
        ok = len(lengths) == 1
    if not ok:
        raise IPAdapterError("These are not IPAdapter params (or their lists have different lengths).",
                             input=f"params_{i}", expected="IPADAPTER_PARAMS from 'IPAdapter Regional Conditioning' "
                             "or 'IPAdapter Combine Params'", fix="Connect one of those nodes' outputs.")
