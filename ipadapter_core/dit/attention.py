"""The image-prompt terms transformer IP-Adapters add inside a block (dit-adapters.md §2.1-2.3).

Every function here is pure tensor math: the host glue captures the block's own query (and, for
SD3.5, its raw keys/values), calls one of these, and adds the result where the adapter's reference
adds it. Heads are laid out ``[B, H, L, D]`` like the transformers' attention inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention import fit_rows as expand_rows  # one reference set broadcasts; per-latent sets are fitted


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[R, N, H*D]`` -> ``[R, H, N, D]``."""
    rows, n, width = x.shape
    return x.reshape(rows, n, heads, width // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, L, D]`` -> ``[B, L, H*D]``."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm over the last dimension, computed in fp32 (as every reference does) and cast back."""
    x32 = x.float()
    out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        out = out * weight.float()
    return out.to(x.dtype)


def prompt_attention_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of the block's queries over the image-prompt tokens only (XLabs, InstantX Flux).

    ``q`` [B, H, L, D] (after the block's QK norm, before RoPE: the prompt tokens have no position);
    ``k``/``v`` [R, H, N, D]. Default 1/sqrt(D) scale. Returns ``[B, H, L, D]`` in q's dtype, a fresh
    tensor the caller may scale in place.
    """
    k, v = expand_rows(k.to(q), q.shape[0]), expand_rows(v.to(q), q.shape[0])
    return F.scaled_dot_product_attention(q, k, v)


def prompt_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``prompt_attention_heads`` with the heads merged: ``[B, L, H*D]``."""
    return merge_heads(prompt_attention_heads(q, k, v))


def instantx_keys(k: torch.Tensor, v: torch.Tensor, v_norm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """InstantX Flux normalises the prompt keys per head (RMSNorm, eps 1e-5, no weight) once.

    ``v_norm`` also normalises the values, as ComfyUI-IPAdapter-Flux does (the "shakker_compat"
    reading of an unverified point; see docs/dit.md).
    """
    k = rms_norm(k, 1e-5)
    return k, (rms_norm(v, 1e-5) if v_norm else v)


def sd3_prompt_kv(tokens: torch.Tensor, temb: torch.Tensor, norm_ip: tuple[torch.Tensor, torch.Tensor],
                  wk: torch.Tensor, wv: torch.Tensor, norm_ip_k: torch.Tensor,
                  heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SD3.5 prompt keys/values of one block: AdaLayerNorm of the resampled tokens by the timestep
    embedding (shift first), then bias-free K/V and the key RMSNorm. ``tokens`` [R, N, C], ``temb``
    [R or 1, Ct] -> K, V [R, H, N, D]."""
    shift, scale = F.linear(F.silu(temb), *norm_ip).chunk(2, dim=-1)
    normed = F.layer_norm(tokens, tokens.shape[-1:], eps=1e-6)
    modulated = normed * (1 + scale[:, None]) + shift[:, None]
    k = split_heads(F.linear(modulated, wk), heads)
    v = split_heads(F.linear(modulated, wv), heads)
    return rms_norm(k, 1e-6, norm_ip_k), v


def sd3_prompt_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ip_k: torch.Tensor,
                         ip_v: torch.Tensor, norm_q: torch.Tensor, norm_k: torch.Tensor) -> torch.Tensor:
    """SD3.5's image-prompt branch: the image stream's own self-attention extended by the prompt tokens.

    ``q``/``k``/``v`` are the block's raw image projections [B, H, L, D] (before the model's own
    ln_q/ln_k); the adapter applies its own RMSNorms. ``ip_k``/``ip_v`` [R, H, N, D]. Returns
    ``[B, L, H*D]``; the caller scales it and adds it before the block's output projection.
    """
    rows = q.shape[0]
    keys = torch.cat([rms_norm(k, 1e-6, norm_k), expand_rows(ip_k.to(q), rows)], dim=2)
    values = torch.cat([v, expand_rows(ip_v.to(q), rows)], dim=2)
    return merge_heads(F.scaled_dot_product_attention(rms_norm(q, 1e-6, norm_q), keys, values))
