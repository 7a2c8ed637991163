"""Noise images for the negative (uncond) branch: fade, dissolve, gaussian and shuffle (incumbent §4.8).

Deterministic without touching the global torch RNG: the seed is a hash of the base image's
8-bit content, fed to a local ``torch.Generator``. The same image always gives the same noise
(so ComfyUI's cache and re-runs agree), and no other node's randomness is disturbed.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from .errors import IPAdapterError
from .images import center_square_resize

NOISE_TYPES = ["fade", "dissolve", "gaussian", "shuffle"]
NOISE_SIZE = 224
ELASTIC_ALPHA = 75.0


def seed_from_image(image: torch.Tensor) -> int:
    """A 63-bit seed from the image's shape and 8-bit pixel values (stable across platforms)."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()
    digest = hashlib.sha256(str(tuple(image.shape)).encode() + pixels.numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def gaussian_kernel(kernel_size: int, sigma: float | None = None) -> torch.Tensor:
    """1-D normalised Gaussian; the default sigma is torchvision's for that kernel size."""
    if sigma is None:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of a ``[B, C, H, W]`` tensor, reflect-padded (replicate if too small)."""
    if kernel_size <= 1:
        return x
    k = gaussian_kernel(kernel_size, sigma).to(x)
    c = x.shape[1]
    half = kernel_size // 2
    mode = "reflect" if min(x.shape[-2:]) > half else "replicate"
    x = F.pad(x, (half, half, half, half), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, kernel_size), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, kernel_size, 1), groups=c)


def elastic(image: torch.Tensor, alpha: float, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """torchvision's ElasticTransform on ``[B, C, H, W]``: one random displacement field for the batch,
    smoothed by a Gaussian of ``sigma`` (none at 0), scaled by alpha/size, bilinear, zeros outside."""
    _, _, h, w = image.shape
    field = torch.rand(1, 2, h, w, generator=gen) * 2 - 1
    if sigma > 0:
        ks = int(8 * sigma + 1)
        ks += 1 - ks % 2
        field = gaussian_blur(field, ks, sigma)
    dx = field[:, 0] * alpha / h
    dy = field[:, 1] * alpha / w
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack((grid_x + dx[0], grid_y + dy[0]), dim=-1).unsqueeze(0).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid.to(image), mode="bilinear", padding_mode="zeros", align_corners=False)


def base_image(image: torch.Tensor | None, size: int = NOISE_SIZE) -> torch.Tensor:
    """Black ``[1, size, size, 3]``, or the image centre-cropped to a square and resized to ``size``."""
    if image is None:
        return torch.zeros(1, size, size, 3)
    return center_square_resize(image.detach().float().cpu(), size)


def make_noise(noise_type: str, strength: float, blur: int = 0, image: torch.Tensor | None = None,
               size: int = NOISE_SIZE) -> torch.Tensor:
    """A noise IMAGE ``[B, size, size, 3]`` in [0, 1] (B = 1 without an image)."""
    base = base_image(image, size)
    gen = torch.Generator().manual_seed(seed_from_image(base))
    if noise_type == "fade":
        out = torch.lerp(base, torch.rand(base.shape, generator=gen), strength)
    elif noise_type == "dissolve":
        mask = (torch.rand(base.shape, generator=gen) < strength).float()
        out = base * (1 - mask) + torch.rand(base.shape, generator=gen) * mask
    elif noise_type == "gaussian":
        out = base + torch.randn(base.shape, generator=gen) * strength
    elif noise_type == "shuffle":
        warped = elastic(base.movedim(-1, 1), ELASTIC_ALPHA, (1 - strength) * 3.5, gen)
        warped = warped.flip(-1).flip(-2).movedim(1, -1)  # vertical then horizontal flip
        n = torch.randn(warped.shape, generator=gen) * (strength * 0.75)
        out = warped * (1 - n) + n
    else:
        raise IPAdapterError(f"Unknown noise type '{noise_type}'.", expected=", ".join(NOISE_TYPES),
                             fix="Pick a type from the list.", input="type")
    out = out.clamp(0, 1)
    if blur > 0:
        ks = blur if blur % 2 else blur + 1
        out = gaussian_blur(out.movedim(-1, 1), ks).movedim(1, -1)
    return out
