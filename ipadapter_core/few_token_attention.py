"""Attention over a handful of image tokens, straight from the block's ``[B, N, inner]`` layout.

An attention-library call reshapes q into heads, runs a kernel built for long key sequences,
copies its output back into ``[B, N, inner]`` and leaves a scale-and-add pass to the caller. With
T <= 16 image keys the attention itself is tiny and those passes are most of the cost. Here each
batch row's q is *viewed* (not copied) as ``[H, d, N]``: one batched product gives every head's
scores ``[H, T, N]`` (the softmax then runs over T with N contiguous), and a second adds the
probabilities times V, scaled, straight into the block's output viewed as ``[H, N, d]``. Same
multiply-adds as per-head attention; no copies, no temporary output.

Measured on a 2-core AVX-512 Xeon (fp32, torch 2.14, batch 2; ``bench/few_tokens.py``): 0.28-0.73x
the time of the SDPA call plus its scale-and-add at T=4, 0.67-0.84x at T=16 on the sites that
matter, slower from T=64 on (a library kernel's blocking wins there). Like any attention backend
it agrees with the others to float rounding, not bit for bit.
"""

from __future__ import annotations

import torch

MAX_TOKENS = 16  # basic/FaceID (4), Kolors FaceID (6), plus/portrait (16); full face (257) is not few


def worthwhile(q: torch.Tensor, heads: int, tokens: int) -> bool:
    """True where this path is the faster one: fp32 on a CPU, at most MAX_TOKENS image tokens."""
    return q.device.type == "cpu" and q.dtype == torch.float32 and heads > 0 and 0 < tokens <= MAX_TOKENS


def split_heads(k: torch.Tensor, v: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, inner]`` keys/values -> contiguous ``[B, H, T, d]``; K pre-scaled by 1/sqrt(d)."""
    b, tokens, inner = k.shape
    d = inner // heads
    kh = (k.reshape(b, tokens, heads, d).transpose(1, 2) * d**-0.5).contiguous()
    vh = v.reshape(b, tokens, heads, d).transpose(1, 2).contiguous()
    return kh, vh


Factor = float | torch.Tensor | None


def add_attention_(out: torch.Tensor, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, alpha: float = 1.0,
                   row_factor: torch.Tensor | None = None) -> torch.Tensor:
    """``out += alpha * row_factor * Attn(q, K, V)`` in place, from ``split_heads``'s K/V.

    ``out`` must be contiguous ``[B, N, inner]``. ``row_factor`` multiplies per query row and
    broadcasts as ``[B or 1, 1, N or 1]`` (masks, per-image weights, an on-device sigma gate).
    """
    return add_values_(out, probabilities(q, kh, [(kh.shape[2], row_factor)]), vh, alpha)


def probabilities(q: torch.Tensor, kh: torch.Tensor, segments: list[tuple[int, Factor]]) -> torch.Tensor:
    """The first product: every batch row's and head's attention probabilities, ``[B, H, T, N]``.

    Several adapters can go at once, their K side by side along the tokens (``torch.cat(..., dim=2)``):
    each ``(tokens, factor)`` segment is softmaxed on its own (the adapters' attentions are separate
    sums) and scaled by its factor.
    """
    b, n, inner = q.shape
    heads, tokens = kh.shape[1], kh.shape[2]
    scores = q.new_empty(b, heads, tokens, n)
    q_rows = q.contiguous().view(b, n, heads, inner // heads).permute(0, 2, 3, 1)  # [B, H, d, N], a view
    for row_scores, k_row, q_row in zip(scores.unbind(0), kh.unbind(0), q_rows.unbind(0), strict=True):
        torch.bmm(k_row, q_row, out=row_scores)
    if len(segments) == 1:
        probs = torch.softmax(scores, dim=2)
        _scale_(probs, segments[0][1])
        return probs
    start = 0
    for count, factor in segments:
        part = scores[:, :, start:start + count]
        part.copy_(torch.softmax(part, dim=2))
        _scale_(part, factor)
        start += count
    return scores


def add_values_(out: torch.Tensor, probs: torch.Tensor, vh: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """The second product: ``out += alpha * P V`` in place, ``out`` viewed per row as ``[H, N, d]``."""
    b, n, inner = out.shape
    heads = vh.shape[1]
    out_rows = out.view(b, n, heads, inner // heads).transpose(1, 2)  # [B, H, N, d], a view
    for out_row, p_row, v_row in zip(out_rows.unbind(0), probs.transpose(2, 3).unbind(0), vh.unbind(0), strict=True):
        out_row.baddbmm_(p_row, v_row, alpha=alpha)
    return out


def _scale_(probs: torch.Tensor, factor: Factor) -> None:
    """``probs [B, H, T, N] *= factor``, a float or a ``[B or 1, 1, N or 1]`` / ``[1]`` tensor."""
    if factor is None or (not isinstance(factor, torch.Tensor) and factor == 1.0):
        return
    if isinstance(factor, torch.Tensor) and factor.dim() == 3:
        factor = factor.unsqueeze(1)  # [B, 1, N] -> [B, 1, 1, N]: the same for every head and token
    probs.mul_(factor)
