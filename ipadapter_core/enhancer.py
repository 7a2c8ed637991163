"""ClipVision Enhancer (incumbent.md §5.4): encode n x n crops and merge them into one image's embeds.

CLIP vision sees a reference at 224 (336) px, so detail is lost. The enhancer also encodes the
image as an n x n grid of crops and merges the crops' outputs back into the shape of one image's:

* hidden states ``[n*n, 1+g*g, D]``: each crop's g x g patch tokens go back to their place in a
  (g*n) x (g*n) grid, average-pooled to g x g (each output token = the mean of an n x n block);
  the CLS token is the mean of the crops' CLS tokens (SigLIP has none: ``[n*n, g*g, D]``);
* pooled ``image_embeds`` ``[n*n, D]``: the mean over the crops. The incumbent reshaped the
  D-vector into a sqrt(D) x sqrt(D) "image" and pooled that, which fails for 768- and 1280-wide
  encoders (ViT-L-336, bigG) and has no meaning for a projected vector; the mean works for any D
  and, like the CLS mean above, treats every crop alike.

Mixing with the full-image encoding (``mix``): without batch unfolding, each image contributes two
entries, ``full * ratio`` and the merged crops, which ``combine_embeds`` then treats as two
references (the incumbent did this only for a single image); with unfolding (image i -> latent i)
each image keeps one entry, ``full * ratio + crops * (1 - ratio)`` (the incumbent's batch rule,
now also for a one-image batch, which it split over two latents).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import IPAdapterError

MAX_TILES = 16


def split_tiles(image: torch.Tensor, n: int) -> torch.Tensor:
    """``[B,H,W,C]`` -> ``[B, n*n, H//n, W//n, C]`` crops in row-major order (remainder pixels dropped)."""
    b, h, w, c = image.shape
    th, tw = h // n, w // n
    if th < 1 or tw < 1:
        raise IPAdapterError(
            f"The image ({w}x{h}) is too small to cut into {n}x{n} tiles.",
            expected=f"an image at least {n} pixels on each side (ideally {224 * n} px square)",
            fix="Lower enhance_tiles or use a larger reference image.", input="enhance_tiles",
        )
    x = image[:, : th * n, : tw * n, :].reshape(b, n, th, n, tw, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, n * n, th, tw, c)


def merge_hidden_states(states: torch.Tensor, n: int) -> torch.Tensor:
    """``[B*n*n, c+g*g, D]`` (each image's n*n crops in row-major order) -> ``[B, c+g*g, D]``.

    ``c`` is 1 for CLIP (a CLS token first) and 0 for SigLIP (patch tokens only, e.g. 729 = 27 x 27).
    """
    total, tokens, dim = states.shape
    cls_tokens = 0 if round(tokens ** 0.5) ** 2 == tokens else 1
    g = round((tokens - cls_tokens) ** 0.5)
    if g * g != tokens - cls_tokens or total % (n * n):
        raise IPAdapterError(
            f"Cannot merge {total} tiles' hidden states of {tokens} tokens into {n}x{n} grids.",
            expected="CLIP vision hidden states with a square patch grid (257 or 577 tokens with CLS, SigLIP's 729)",
            fix="Use a standard CLIP vision encoder (ViT-H, ViT-bigG, ViT-L or SigLIP) with the enhancer.",
            input="clip_vision",
        )
    b = total // (n * n)
    x = states.reshape(b, n, n, tokens, dim)
    patches = x[..., cls_tokens:, :].reshape(b, n, n, g, g, dim).permute(0, 5, 1, 3, 2, 4).reshape(
        b, dim, n * g, n * g)
    pooled = F.adaptive_avg_pool2d(patches, (g, g)).flatten(2).transpose(1, 2)  # [B, g*g, D]
    if not cls_tokens:
        return pooled
    cls = x[..., 0, :].mean(dim=(1, 2)).unsqueeze(1)  # [B, 1, D]
    return torch.cat([cls, pooled], dim=1)


def merge_pooled(embeds: torch.Tensor, n: int) -> torch.Tensor:
    """``[B*n*n, D]`` pooled image_embeds -> ``[B, D]``: the mean over each image's crops (any D)."""
    total, dim = embeds.shape
    if total % (n * n):
        raise ValueError(f"{total} tile embeds are not a whole number of {n}x{n} grids")
    return embeds.reshape(total // (n * n), n * n, dim).mean(dim=1)


def merge(tile_embeds: torch.Tensor, n: int) -> torch.Tensor:
    """Merge tiles' encoder output, hidden states ``[.., T, D]`` or pooled ``[.., D]``."""
    return merge_hidden_states(tile_embeds, n) if tile_embeds.dim() == 3 else merge_pooled(tile_embeds, n)


def mix(full: torch.Tensor, tiles: torch.Tensor, ratio: float, unfold: bool) -> torch.Tensor:
    """Combine the full-image and merged-crop embeds (see the module docstring)."""
    if unfold:
        return full * ratio + tiles * (1 - ratio)
    return torch.cat([full * ratio, tiles])


def clamp_tiles(n: int) -> int:
    return max(1, min(int(n), MAX_TILES))
