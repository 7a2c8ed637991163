"""The v1 ``noise`` negative (incumbent-v1.md §2.3): a scrambled, flipped, noisy copy of the reference.

v1 workflows (ComfyUI_IPAdapter_plus before 2024-03) carry a ``noise`` widget on their apply nodes
and encoder. With noise > 0 the unconditional embeds come from this image instead of a black one,
so CFG pushes away from "a scrambled version of the reference" rather than from "nothing".

v1 seeded the *global* torch RNG with 0 on every call (a side effect on every other node). We draw
the same sequence from a local ``torch.Generator`` seeded with 0, in v1's order, so the effect is the
same image for the same input and nothing else's randomness is touched:

1. centre crop to a square (torchvision's rounding), resize to 224 (bicubic, antialias, no clamp);
2. torchvision v1 ``ElasticTransform(alpha=75, sigma=3.5*noise)``: a uniform field for dx, its blur,
   then dy and its blur; bilinear sampling with fill 0 (image times the sampled coverage mask);
3. vertical then horizontal flip (each still draws one ``rand(1)``, as p=1 transforms do);
4. add Gaussian noise of std (0.3 - 0.25*noise), drawn on the channels-last *view* (non-contiguous,
   which is why ``empty_like(view).normal_`` is used and not ``randn`` on a fresh tensor).
The result is not clamped: the host's CLIP preprocessing clamps and rounds it, as in v1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import IPAdapterError

NOISE_SIZE = 224
ELASTIC_ALPHA = 75.0
SEED = 0


def _center_crop_square(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``CenterCrop(min(H, W))`` on [N, C, H, W]: offsets use Python's round (half to even)."""
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return x[..., top:top + side, left:left + side]


def _kernel1d(size: int, sigma: float) -> torch.Tensor:
    half = (size - 1) * 0.5
    x = torch.linspace(-half, half, steps=size)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    return pdf / pdf.sum()


def _blur(field: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """torchvision ``gaussian_blur`` on a [1, 1, H, W] field: reflect padding, one 2-D kernel."""
    if size <= 1:
        return field
    k1 = _kernel1d(size, sigma)
    kernel = (k1[:, None] * k1[None, :]).expand(1, 1, size, size)
    pad = size // 2
    padded = F.pad(field, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, kernel)


def _displacement(size: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """The elastic displacement [1, H, W, 2] in normalised grid units, drawn in torchvision's order."""
    components = []
    for _ in range(2):  # dx, then dy
        d = torch.rand([1, 1, size, size], generator=gen) * 2 - 1
        if sigma > 0.0:
            k = int(8 * sigma + 1)
            if k % 2 == 0:
                k += 1
            d = _blur(d, k, sigma)
        components.append(d * ELASTIC_ALPHA / size)
    return torch.cat(components, 1).permute([0, 2, 3, 1])


def elastic_transform(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """torchvision ``F.elastic_transform`` (bilinear, fill 0) of [N, C, H, W] with a given displacement."""
    n, _, h, w = x.shape
    ys = torch.linspace((-h + 1) / h, (h - 1) / h, h)
    xs = torch.linspace((-w + 1) / w, (w - 1) / w, w)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1).unsqueeze(0) + displacement
    coverage = torch.ones(n, 1, h, w, dtype=x.dtype)
    sampled = F.grid_sample(torch.cat((x, coverage), 1), grid.expand(n, h, w, 2).to(x.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    return sampled[:, :-1] * sampled[:, -1:]


def v1_noise_image(image: torch.Tensor, noise: float, size: int = NOISE_SIZE) -> torch.Tensor:
    """The v1 negative image [N, size, size, 3] for ``noise`` in (0, 1]; not clamped (see module doc)."""
    if not isinstance(noise, (int, float)) or math.isnan(noise) or not 0.0 < noise <= 1.0:
        raise IPAdapterError(f"noise is {noise!r}.", expected="a number in (0, 1] (0 switches the noise off)",
                             fix="Set noise between 0.01 (heavily scrambled) and 1.0 (almost the reference).",
                             input="noise")
    gen = torch.Generator().manual_seed(SEED)
    x = image[..., :3].detach().float().cpu().movedim(-1, 1)
    x = _center_crop_square(x)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    x = elastic_transform(x, _displacement(size, noise * 3.5, gen))
    torch.rand(1, generator=gen)  # RandomVerticalFlip(p=1) draws once
    x = x.flip(-2)
    torch.rand(1, generator=gen)  # RandomHorizontalFlip(p=1) draws once
    x = x.flip(-1)
    view = x.permute([0, 2, 3, 1])
    gaussian = torch.empty_like(view).normal_(0.0, 1.0, generator=gen)
    return view + (0.25 * (1 - noise) + 0.05) * gaussian
