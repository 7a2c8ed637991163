"""The decoupled image cross-attention, as a per-site patch.

    out = Attn(q, K, V) + sum_a  w_a * m_a * Attn(q, K'_a, V'_a)

q, K, V are the block's own (the host computes them); K'_a/V'_a are the adapter's image keys and
values. They are constants of an application, so they are projected once (``SiteKV``) and only
re-assembled for a new batch layout; the per-step work is the attention itself.

The host's attention function is injected (``AttentionFn``) so this module stays free of ComfyUI;
``sdpa_attention`` is the plain-PyTorch default used in tests. So is the policy (``FewTokenPolicy``)
that sends a handful of image tokens to ``few_token_attention`` instead, which adds them straight into
the block's output; several such adapters on one site then share one pass over q and the output.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import few_token_attention
from .device_cache import DeviceCache
from .errors import IPAdapterError

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, dict], torch.Tensor]
# (q, extra, heads, image tokens) -> use few_token_attention for this call?
FewTokenPolicy = Callable[[torch.Tensor, dict, int, int], bool]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, extra: dict | None = None):
    """Multi-head attention on ``[B, N, heads*dim]`` tensors (PyTorch SDPA)."""
    b, nq, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qh, kh, vh)
    return out.transpose(1, 2).reshape(b, nq, inner)


@dataclass
class SiteKV:
    """One application's image keys/values at one site, projected once.

    ``k_cond``/``v_cond`` are ``[N, T, inner]`` with N = 1 (one token set for every latent) or one
    row per image (batch mode: image i conditions latent i). ``scale`` multiplies the output
    (``V only``): a float, or a ``[N]`` tensor of per-frame weights in batch mode. The K+V scaling
    modes are folded into K and V instead.
    """

    k_cond: torch.Tensor | None
    v_cond: torch.Tensor | None
    k_uncond: torch.Tensor | None
    v_uncond: torch.Tensor | None
    scale: float | torch.Tensor
    _layouts: DeviceCache = field(default_factory=lambda: DeviceCache(device_at=2), repr=False)

    def assembled(self, cond_or_uncond: tuple, rows: RowLayout, device, dtype):
        """K'/V' (and per-row scale) for a batch of ``cond_or_uncond`` chunks laid out as ``rows``."""

        def make():
            ks, vs = [], []
            for chunk in cond_or_uncond:
                k, v = (self.k_uncond, self.v_uncond) if chunk == 1 else (self.k_cond, self.v_cond)
                if k is None:  # precise types: this branch gets no reference (zero K/V -> zero output)
                    k = torch.zeros_like(self.k_cond if self.k_cond is not None else self.k_uncond)
                    v = torch.zeros_like(k)
                ks.append(rows.take(k))
                vs.append(rows.take(v))
            scale = self.scale
            if isinstance(scale, torch.Tensor):
                scale = torch.cat([rows.take(scale.reshape(-1, 1, 1))] * len(cond_or_uncond)).to(device, dtype)
            return torch.cat(ks).to(device, dtype), torch.cat(vs).to(device, dtype), scale

        return self._layouts.get((cond_or_uncond, rows, device, dtype), make)

    @property
    def tokens(self) -> int:
        return int((self.k_cond if self.k_cond is not None else self.k_uncond).shape[1])

    def per_head(self, cond_or_uncond: tuple, rows: RowLayout, device, dtype, heads: int):
        """``assembled`` split into heads for ``few_token_attention``, cached the same way."""

        def make():
            k, v, scale = self.assembled(cond_or_uncond, rows, device, dtype)
            return (*few_token_attention.split_heads(k, v, heads), scale)

        return self._layouts.get((cond_or_uncond, rows, device, dtype, heads), make)

    def keep_device(self, device: torch.device) -> None:
        self._layouts.moved_to(device)


@dataclass(frozen=True)
class RowLayout:
    """How the latents of one chunk map to per-image rows.

    ``per_chunk`` latents per cond/uncond chunk; with AnimateDiff context windows, ``sub_idxs`` are
    the frames of this window out of ``full_length`` (per-frame rows are fitted to the full length
    first, then indexed).
    """

    per_chunk: int
    sub_idxs: tuple[int, ...] | None = None
    full_length: int | None = None

    @classmethod
    def of(cls, extra: dict, per_chunk: int) -> RowLayout:
        ad = extra.get("ad_params")
        if isinstance(ad, dict) and ad.get("sub_idxs") is not None and len(ad["sub_idxs"]) == per_chunk:
            return cls(per_chunk, tuple(int(i) for i in ad["sub_idxs"]), int(ad.get("full_length") or 0) or None)
        return cls(per_chunk)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        if self.sub_idxs is None or t.shape[0] == 1:
            return fit_rows(t, self.per_chunk)
        full = fit_rows(t, max(self.full_length or 0, max(self.sub_idxs) + 1))
        return full[list(self.sub_idxs)]


def batch_layout(q: torch.Tensor, extra: dict) -> tuple[tuple, RowLayout]:
    """The call's cond/uncond chunk order and how its latents map to image rows."""
    cou = tuple(extra.get("cond_or_uncond") or (0,))
    return cou, RowLayout.of(extra, q.shape[0] // len(cou))


def fit_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat a 1-row tensor to n rows, or fit a per-image tensor to n (repeat the last / truncate)."""
    if t.shape[0] == n:
        return t
    if t.shape[0] == 1:
        return t.expand(n, *t.shape[1:])
    if t.shape[0] > n:
        return t[:n]
    return torch.cat([t, t[-1:].expand(n - t.shape[0], *t.shape[1:])])


def validate_mask(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as [M, H, W] (a single [H, W] mask is accepted), or an error naming what is wrong."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() != 3 or 0 in mask.shape:
        raise IPAdapterError(f"The mask has shape {tuple(mask.shape)}.", expected="a MASK [batch, H, W]",
                             fix="Connect a MASK output (Load Image's mask, Solid Mask, ...).", input="attn_mask")
    if not torch.isfinite(mask).all():
        raise IPAdapterError("The mask contains NaN or infinite values.", expected="values between 0 and 1",
                             fix="Check the node that made the mask.", input="attn_mask")
    return mask


class SpatialMask:
    """An attention mask [M, H, W] resized once per token grid and batch layout."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = validate_mask(mask).float()
        self._cache = DeviceCache(device_at=3, limit=16)

    def rows(self, grid: tuple[int, int], chunks: int, rows: RowLayout, device, dtype) -> torch.Tensor:
        def make():
            m = F.interpolate(self.mask.unsqueeze(1), size=grid, mode="bilinear", align_corners=False)
            m = rows.take(m.reshape(m.shape[0], -1, 1))
            return m.repeat(chunks, 1, 1).to(device, dtype)

        return self._cache.get((grid, chunks, rows, device, dtype), make)

    def keep_device(self, device: torch.device) -> None:
        self._cache.moved_to(device)


# (weak reference to the sigmas tensor, its value): one tuple, replaced whole, so a thread never pairs
# another thread's tensor with its value (multi-GPU hosts sample device copies in a thread pool).
_last_sigma: list[tuple[weakref.ref, float] | None] = [None]


def current_sigma(sigmas: torch.Tensor | None) -> float:
    """The sampler's current sigma, read once per UNet call (the same tensor reaches every site)."""
    if sigmas is None:
        return 1e9
    last = _last_sigma[0]
    if last is not None and last[0]() is sigmas:
        return last[1]
    value = float(sigmas.reshape(-1)[0])
    _last_sigma[0] = (weakref.ref(sigmas), value)
    return value


@dataclass
class Application:
    """One adapter applied to a model: its K/V at every site it acts on, mask and sigma window."""

    sites: dict[tuple, SiteKV]
    sigma_start: float = 1e9
    sigma_end: float = 0.0
    mask: SpatialMask | None = None
    label: str = "IPAdapter"

    @property
    def always_on(self) -> bool:
        """True when start_at=0 and end_at=1: no sigma needs to be read at all."""
        return self.sigma_start >= 1e8 and self.sigma_end <= 0.0

    def window(self, q: torch.Tensor, extra: dict) -> tuple[bool, torch.Tensor | None]:
        """(active at this step, on-device 0/1 gate or None). Never reads a GPU sigma back."""
        if self.always_on:
            return True, None
        sigmas = extra.get("sigmas")
        if sigmas is not None and sigmas.device.type != "cpu":
            # Decided on the device: reading the sigma back would stall the GPU at every block.
            s = sigmas.reshape(-1)[:1]
            return True, ((s >= self.sigma_end) & (s <= self.sigma_start)).to(q.dtype)
        return self.sigma_end <= current_sigma(sigmas) <= self.sigma_start, None

    def contribution(self, kv: SiteKV, q: torch.Tensor, extra: dict, attention: AttentionFn,
                     gate: torch.Tensor | None = None, layout: tuple | None = None) -> torch.Tensor:
        """``w * m * gate * Attn(q, K', V')`` as a fresh tensor (the caller checked ``window``).

        ``layout`` is the call's ``batch_layout``, when the caller has it already.
        """
        cou, rows = layout or batch_layout(q, extra)
        k, v, scale = kv.assembled(cou, rows, q.device, q.dtype)
        out = attention(q, k, v, extra.get("n_heads", 1), extra)  # a fresh tensor: scaled in place
        if isinstance(scale, torch.Tensor) or scale != 1.0:
            out.mul_(scale)
        if self.mask is not None:
            out.mul_(self.mask.rows(_token_grid(extra, q.shape[1]), len(cou), rows, q.device, q.dtype))
        if gate is not None:
            out.mul_(gate)
        return out

    def few_token_terms(self, kv: SiteKV, q: torch.Tensor, extra: dict, gate: torch.Tensor | None = None,
                        layout: tuple | None = None):
        """(K/V split into heads, alpha, per-row factor) of this application, for few_token_attention."""
        cou, rows = layout or batch_layout(q, extra)
        kh, vh, scale = kv.per_head(cou, rows, q.device, q.dtype, extra.get("n_heads", 1))
        factors = [gate] if gate is not None else []
        if isinstance(scale, torch.Tensor):
            factors.append(scale)  # [B, 1, 1]
        if self.mask is not None:
            m = self.mask.rows(_token_grid(extra, q.shape[1]), len(cou), rows, q.device, q.dtype)
            factors.append(m.transpose(1, 2))  # [B, N, 1] -> [B, 1, N]: per query, in the probabilities
        factor = None
        for f in factors:
            factor = f if factor is None else factor * f
        return kh, vh, 1.0 if isinstance(scale, torch.Tensor) else float(scale), factor

    def keep_device(self, device: torch.device) -> None:
        """Drop cached copies on other devices (the model was moved or offloaded)."""
        for kv in self.sites.values():
            kv.keep_device(device)
        if self.mask is not None:
            self.mask.keep_device(device)


def _token_grid(extra: dict, tokens: int) -> tuple[int, int]:
    shape = extra.get("activations_shape")
    if shape is not None and shape[-2] * shape[-1] == tokens:
        return int(shape[-2]), int(shape[-1])
    oh, ow = (extra.get("original_shape") or [1, 1, 1, 1])[-2:]
    scale = (oh * ow / tokens) ** 0.5
    h = max(1, round(oh / scale))
    return h, tokens // h


class CrossAttentionPatch:
    """The attn2 replacement for one site: the block's own attention plus every stacked adapter.

    Immutable: stacking builds a new patch, so a cloned model never changes its parent, and
    ``__deepcopy__`` (ComfyUI deep-copies model_options on every clone) shares instead of copying
    adapter tensors. A foreign replacement already on the site (another pack's) is kept as
    ``inner`` and still computes the base attention; ours adds to its result.
    """

    def __init__(self, site_key: tuple, applications: tuple = (), attention: AttentionFn = sdpa_attention,
                 inner: Callable | None = None, image_attention: AttentionFn | None = None,
                 few_tokens: FewTokenPolicy | None = None) -> None:
        self.site_key = site_key
        self.applications = tuple(applications)
        self.attention = attention  # the block's own text attention: exactly what the host would run
        self.image_attention = image_attention or attention  # attention over the few image tokens
        self.few_tokens = few_tokens  # when to add the image part by few_token_attention instead
        self.inner = inner
        # stacked few-token adapters' concatenated K/V, per batch layout and device
        self._stacks = DeviceCache(device_at=3)

    def _with(self, applications: tuple, inner: Callable | None) -> CrossAttentionPatch:
        return CrossAttentionPatch(self.site_key, applications, self.attention, inner, self.image_attention,
                                   self.few_tokens)

    def stacked(self, application: Application) -> CrossAttentionPatch:
        return self._with(self.applications + (application,), self.inner)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
        heads, layout = extra["n_heads"], batch_layout(q, extra)
        few, library = [], []
        for index, app in enumerate(self.applications):
            kv = app.sites.get(self.site_key)
            if kv is None:
                continue
            active, gate = app.window(q, extra)
            if active:
                use_few = self.few_tokens is not None and self.few_tokens(q, extra, heads, kv.tokens)
                (few if use_few else library).append((index, app, kv, gate))
        if self.inner is not None:
            out = self.inner(q, k, v, extra)
            owned = False  # another pack's result: it may still hold it, so never write into it
        else:
            out = self.attention(q, k, v, heads, extra)
            owned = True
        for _, app, kv, gate in library:
            extra_out = app.contribution(kv, q, extra, self.image_attention, gate, layout)
            if owned and out.dtype == extra_out.dtype:
                out.add_(extra_out)  # in place: one full-size pass less per adapter and step
            else:
                out, owned = out + extra_out, True
        if few:
            if not owned or out.dtype != q.dtype or not out.is_contiguous():
                out = out.to(q.dtype, memory_format=torch.contiguous_format, copy=True)
            few_token_attention.add_values_(out, *self._few_token_probabilities(few, q, extra, layout))
        return out.to(q.dtype)

    def _few_token_probabilities(self, few: list, q: torch.Tensor, extra: dict, layout: tuple) -> tuple:
        """(probabilities ``[B, H, T, N]``, V split into heads, alpha) of the few-token adapters, all in one.

        Several of them share one pass: their K/V are concatenated once per batch layout, each keeps its
        own softmax, and its weight goes into its probabilities.
        """
        terms = [app.few_token_terms(kv, q, extra, gate, layout) for _, app, kv, gate in few]
        if len(terms) == 1:
            kh, vh, alpha, factor = terms[0]
            return few_token_attention.probabilities(q, kh, [(kh.shape[2], factor)]), vh, alpha
        key = (tuple(index for index, *_ in few), *layout, q.device, q.dtype, extra["n_heads"])
        hit = self._stacks.get(key, lambda: (torch.cat([t[0] for t in terms], dim=2),
                                             torch.cat([t[1] for t in terms], dim=2)))
        segments = [(kh.shape[2], factor * alpha if factor is not None else alpha) for kh, _, alpha, factor in terms]
        return few_token_attention.probabilities(q, hit[0], segments), hit[1], 1.0

    def __deepcopy__(self, memo: dict) -> CrossAttentionPatch:
        return self

    def to(self, device_or_dtype: Any) -> CrossAttentionPatch:
        """ComfyUI moves patches with the model (load, offload): follow it, keep nothing behind."""
        if isinstance(device_or_dtype, (torch.device, str)):
            for app in self.applications:
                app.keep_device(torch.device(device_or_dtype))
            self._stacks.moved_to(device_or_dtype)
        if self.inner is not None and hasattr(self.inner, "to"):
            moved = self.inner.to(device_or_dtype)
            if moved is not self.inner:
                return self._with(self.applications, moved)
        return self
