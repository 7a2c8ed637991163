"""Preparing reference images for a CLIP vision encoder: square crop or pad, resize, sharpen.

All functions take and return ComfyUI IMAGE tensors ``[B, H, W, C]`` with values in [0, 1] and
never modify their input. Everything stays in float torch ops (no PIL round trip, so no 8-bit
truncation and no per-image CPU loop).

The incumbent resized with PIL filters. torch has no Lanczos/Hamming kernels, so each PIL name
maps to the closest torch resampling (``RESAMPLING``): downscaling with an antialiased kernel
is what PIL does for every filter except NEAREST, and the encoder resamples again anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import IPAdapterError

CROP_POSITIONS = ["top", "bottom", "left", "right", "center", "pad"]
INTERPOLATIONS = ["LANCZOS", "BICUBIC", "HAMMING", "BILINEAR", "BOX", "NEAREST"]

# PIL filter name -> (torch mode, antialias). LANCZOS (3-lobe sinc) is closest to antialiased bicubic
# (both keep edges crisper than bilinear); HAMMING (a 1-lobe windowed sinc) is closest to antialiased
# bilinear; BOX is an area average ("area" = adaptive average pooling); NEAREST uses pixel centres, as PIL.
RESAMPLING: dict[str, tuple[str, bool]] = {
    "LANCZOS": ("bicubic", True),
    "BICUBIC": ("bicubic", True),
    "HAMMING": ("bilinear", True),
    "BILINEAR": ("bilinear", True),
    "BOX": ("area", False),
    "NEAREST": ("nearest-exact", False),
}


def _bchw(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(-1, 1)


def _bhwc(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(1, -1)


def crop_square(image: torch.Tensor, position: str = "center") -> torch.Tensor:
    """A square crop of side min(H, W); ``position`` chooses which edge it keeps on the long axis.

    top/bottom only move the crop vertically and left/right only horizontally (the other axis is
    centred), as in the incumbent.
    """
    _, h, w, _ = image.shape
    side = min(h, w)
    x, y = (w - side) // 2, (h - side) // 2
    if position == "top":
        y = 0
    elif position == "bottom":
        y = h - side
    elif position == "left":
        x = 0
    elif position == "right":
        x = w - side
    elif position != "center":
        raise IPAdapterError(f"Unknown crop position '{position}'.", expected=", ".join(CROP_POSITIONS),
                             fix="Pick a position from the list.", input="crop_position")
    return image[:, y:y + side, x:x + side, :]


def pad_square(image: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Pad the short side with ``value`` so the result is exactly square (odd differences: one more
    row/column after than before; the incumbent left such images one pixel short)."""
    _, h, w, _ = image.shape
    diff = abs(h - w)
    before, after = diff // 2, diff - diff // 2
    pad = (0, 0, before, after, 0, 0) if h > w else (0, 0, 0, 0, before, after)
    if diff == 0:
        return image
    return F.pad(image, pad, value=value)


def resize(image: torch.Tensor, size: int | tuple[int, int], interpolation: str = "BICUBIC") -> torch.Tensor:
    """Resize to ``size`` (side or (H, W)) with the torch equivalent of a PIL filter name; clamped to [0, 1]."""
    if interpolation not in RESAMPLING:
        raise IPAdapterError(f"Unknown interpolation '{interpolation}'.", expected=", ".join(INTERPOLATIONS),
                             fix="Pick an interpolation from the list.", input="interpolation")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[1:3]) == hw:
        return image
    mode, antialias = RESAMPLING[interpolation]
    x = _bchw(image.float())
    if mode in ("bicubic", "bilinear"):
        out = F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=antialias)
    else:
        out = F.interpolate(x, size=hw, mode=mode)
    return _bhwc(out).clamp(0.0, 1.0)


def contrast_adaptive_sharpening(image: torch.Tensor, amount: float) -> torch.Tensor:
    """AMD-style contrast-adaptive sharpening (incumbent §5.1): sharpen less where contrast is high.

    Over each pixel's 3x3 neighbourhood (zero outside the image, so the 1-pixel border is left as
    is): cross = {b,d,e,f,h}, diag = {a,c,g,i}; mn = min(cross)+min(diag) (mins clamped >= 0),
    mx = max(cross)+max(diag) (maxes clamped <= 1), amp = sqrt(min(mn, 2-mx)/mx),
    w = -amp*(amount*(1/5-1/8)+1/8), out = ((b+d+f+h)*w + e)/(1+4w).
    """
    if amount <= 0:
        return image
    x = F.pad(_bchw(image.float()), (1, 1, 1, 1))
    a, b, c = x[..., :-2, :-2], x[..., :-2, 1:-1], x[..., :-2, 2:]
    d, e, f = x[..., 1:-1, :-2], x[..., 1:-1, 1:-1], x[..., 1:-1, 2:]
    g, h, i = x[..., 2:, :-2], x[..., 2:, 1:-1], x[..., 2:, 2:]
    cross = torch.stack((b, d, e, f, h))
    diag = torch.stack((a, c, g, i))
    mn = cross.amin(0).clamp_min(0) + diag.amin(0).clamp_min(0)
    mx = cross.amax(0).clamp_max(1) + diag.amax(0).clamp_max(1)
    amp = torch.sqrt(torch.minimum(mn, 2 - mx) / mx)
    w = -amp * (amount * (1 / 5 - 1 / 8) + 1 / 8)
    out = ((b + d + f + h) * w + e) / (1 + 4 * w)
    return _bhwc(torch.nan_to_num(out).clamp(0.0, 1.0))


def prep_for_clip_vision(image: torch.Tensor, size: int = 224, interpolation: str = "LANCZOS",
                         crop_position: str = "center", sharpening: float = 0.0) -> torch.Tensor:
    """Square the image (crop or pad), resize to the encoder's input size, optionally sharpen."""
    image = image[..., :3]
    squared = pad_square(image) if crop_position == "pad" else crop_square(image, crop_position)
    out = resize(squared, size, interpolation)
    out = contrast_adaptive_sharpening(out, sharpening)
    if out.untyped_storage().data_ptr() == image.untyped_storage().data_ptr():
        out = out.clone()  # nothing to do: still never hand back (a view of) the cached input
    return out


def center_square_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop to a square and resize (antialiased bicubic): the incumbent's noise-image base."""
    return resize(crop_square(image[..., :3], "center"), size, "BICUBIC")
