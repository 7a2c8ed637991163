"""Is an attention mask made for the picture being sampled? Compares aspect ratios and says so in words.

A mask is resized to each attention grid, so a mask of another shape is stretched. That is usually a
wiring mistake (a mask drawn on another image), so the host glue checks it once per sampling run.
"""

from __future__ import annotations

import math

# More than this relative difference between the two aspect ratios is a stretch worth a warning. Sizes
# rounded to the VAE's 8-pixel grid differ by well under it (e.g. 1000x600 vs its 125x75 latent: exact).
TOLERANCE = 0.05


def stretch(mask_hw: tuple[int, int], latent_hw: tuple[int, int]) -> float:
    """How much the mask is stretched to fit: the ratio of the two aspect ratios, >= 1 (1: none)."""
    (mh, mw), (lh, lw) = mask_hw, latent_hw
    if min(mh, mw, lh, lw) <= 0:
        return 1.0
    return math.exp(abs(math.log((mw / mh) / (lw / lh))))


def _ratio(hw: tuple[int, int]) -> str:
    h, w = hw
    return f"{w / h:.2f}:1" if w >= h else f"1:{h / w:.2f}"


def stretch_warning(mask_hw: tuple[int, int], latent_hw: tuple[int, int], who: str = "IPAdapter",
                    tolerance: float = TOLERANCE) -> str | None:
    """The warning for a mask whose aspect ratio differs from the latent's by more than ``tolerance``."""
    factor = stretch(mask_hw, latent_hw)
    if factor <= 1.0 + tolerance:
        return None
    (mh, mw), (lh, lw) = mask_hw, latent_hw
    return (f"{who}: attn_mask is {mw}x{mh} (width x height, {_ratio(mask_hw)}) but the latent being "
            f"sampled is {lw}x{lh} ({_ratio(latent_hw)}), so the mask is stretched {factor:.2f}x to fit. "
            "A mask drawn on another image is the usual cause. Make the mask at the output image's size, or "
            "crop or pad it to the latent's aspect ratio.")
