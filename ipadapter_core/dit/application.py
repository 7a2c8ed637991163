"""One transformer IP-Adapter applied to one model: where it acts, how strongly, and its device state.

The state lives in ``nn.Module``s whose tensors are parameters, so the host can hand them to its
memory manager (loaded beside the model, offloaded with it) instead of pinning them to a device:
* Flux (XLabs, InstantX): the prompt K/V of every block, computed once here (they do not depend
  on the timestep);
* SD3.5: the encoder features, the time-conditioned resampler and the per-block weights; the
  tokens depend on the timestep, so the hooks resample them once per model call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..device_cache import DeviceCache
from ..errors import IPAdapterError
from ..kinds import ModelKind
from .attention import instantx_keys, split_heads

# The weight types that mean something on a transformer. The UNet types are tables over UNet
# layers; no grouping of transformer blocks has been measured, so none is invented here.
DIT_WEIGHT_TYPES = ("linear",)


@dataclass(frozen=True)
class TransformerLayout:
    """What the host found in the model: its family, width, heads and blocks per stream."""

    arch: str  # "flux" or "mmdit"
    hidden: int
    heads: int
    double: int  # Flux double blocks, or MMDiT joint blocks
    single: int = 0  # Flux single blocks

    @property
    def label(self) -> str:
        if self.arch == "flux":
            return f"Flux (width {self.hidden}, {self.double} double + {self.single} single blocks)"
        name = {2432: "SD3.5-Large", 1536: "SD3.5-Medium / SD3"}.get(self.hidden, "SD3-family")
        return f"{name} (width {self.hidden}, {self.double} joint blocks)"


@dataclass(frozen=True)
class Target:
    """One block the adapter acts on: ``stream`` "double", "single" or "joint", the block's index in
    that stream, the adapter file's entry for it, and its weight."""

    stream: str
    index: int
    entry: int
    weight: float


def entry_streams(kind: ModelKind, layout: TransformerLayout) -> list[tuple[str, int]]:
    """(stream, block index) for each entry of the adapter file, or a clear error when they do not fit."""
    if kind.kind == "xlabs_flux":
        streams, expected = [("double", i) for i in range(layout.double)], layout.double
        what = f"{layout.double} double blocks"
    elif kind.kind == "instantx_flux":
        streams = [("double", i) for i in range(layout.double)] + [("single", j) for j in range(layout.single)]
        expected, what = layout.double + layout.single, f"{layout.double} double + {layout.single} single blocks"
    elif kind.kind == "instantx_sd3":
        streams, expected, what = [("joint", i) for i in range(layout.double)], layout.double, \
            f"{layout.double} joint blocks"
    else:
        raise ValueError(f"{kind.kind} is not a transformer kind")
    if kind.blocks != expected:
        raise IPAdapterError(
            f"The adapter ({kind.label}) has {kind.blocks} per-block entries, but the model has {what}: "
            "they were made for different models.",
            expected=f"an adapter with {expected} block entries for this {layout.label}",
            fix="Use the adapter published for this base model (see the README's models table), or the base model "
            "the adapter was trained on.", input="model")
    return streams


def targets(kind: ModelKind, layout: TransformerLayout, weight: float,
            block_weights: dict[int, float] | None = None) -> list[Target]:
    """Every block with a non-zero weight. ``block_weights`` (Mad Scientist's ``layer_weights``) is
    keyed by the file's entry index; entries it does not name get 0, as on the UNet."""
    for name, value in {"weight": weight, **{f"block {k} weight": v for k, v in (block_weights or {}).items()}}.items():
        if not math.isfinite(value):
            raise IPAdapterError(f"The {name} is {value}.", expected="a finite number",
                                 fix="Check the node or primitive feeding it.", input="weight")
    streams = entry_streams(kind, layout)
    if block_weights is not None:
        unknown = sorted(k for k in block_weights if not 0 <= k < len(streams))
        if unknown:
            raise IPAdapterError(
                f"layer_weights names block {unknown[0]}, but this adapter has blocks 0-{len(streams) - 1}.",
                expected=f"indices 0-{len(streams) - 1} ({kind.label}: entry order of the adapter file)",
                fix="Use block indices of the adapter (docs/dit.md lists them).", input="layer_weights")
    out = []
    for entry, (stream, index) in enumerate(streams):
        w = weight * (block_weights.get(entry, 0.0) if block_weights is not None else 1.0)
        if w != 0:
            out.append(Target(stream, index, entry, w))
    return out


class FluxPromptKV(nn.Module):
    """Prompt K/V ``[R, H, N, D]`` per adapter entry, positive and negative, as frozen parameters."""

    def __init__(self, kv: dict[int, tuple[torch.Tensor, ...]]) -> None:
        super().__init__()
        self.kv = nn.ParameterDict({
            f"{entry}_{name}": nn.Parameter(t.contiguous(), requires_grad=False)
            for entry, tensors in kv.items() for name, t in zip(("kp", "vp", "kn", "vn"), tensors, strict=True)
        })

    def get(self, entry: int, negative: bool) -> tuple[torch.Tensor, torch.Tensor]:
        tag = "n" if negative else "p"
        return self.kv[f"{entry}_k{tag}"], self.kv[f"{entry}_v{tag}"]


def flux_prompt_kv(kind: ModelKind, ip_adapter: dict[str, torch.Tensor], cond: torch.Tensor, uncond: torch.Tensor,
                   entries: list[int], heads: int, v_norm: bool = False, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> FluxPromptKV:
    """K/V of the image tokens ``[R, N, C]`` for each entry, computed on ``device`` and kept on the CPU
    in ``dtype`` (the host moves them when it loads the model)."""
    kv: dict[int, tuple[torch.Tensor, ...]] = {}
    for entry in entries:
        wk, wv = (ip_adapter[f"{entry}.to_{n}_ip.weight"].to(device, torch.float32) for n in ("k", "v"))
        bk, bv = (ip_adapter.get(f"{entry}.to_{n}_ip.bias") for n in ("k", "v"))
        out = []
        for tokens in (cond, uncond):
            t = tokens.to(device, torch.float32)
            k = torch.nn.functional.linear(t, wk, None if bk is None else bk.to(device, torch.float32))
            v = torch.nn.functional.linear(t, wv, None if bv is None else bv.to(device, torch.float32))
            k, v = split_heads(k, heads), split_heads(v, heads)
            if kind.kind == "instantx_flux":
                k, v = instantx_keys(k, v, v_norm)
            out += [k.to("cpu", dtype), v.to("cpu", dtype)]
        kv[entry] = tuple(out)
    return FluxPromptKV(kv)


class SD3PromptState(nn.Module):
    """SD3.5: reference features, the resampler and each acting block's weights; tokens per timestep."""

    def __init__(self, resampler: nn.Module, ip_adapter: dict[str, torch.Tensor], entries: list[int],
                 cond: torch.Tensor, uncond: torch.Tensor, concat: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.resampler = resampler.to(dtype).requires_grad_(False)
        self.concat = concat
        self.features = nn.ParameterDict({
            "p": nn.Parameter(cond.to(dtype), requires_grad=False),
            "n": nn.Parameter(uncond.to(dtype), requires_grad=False),
        })
        names = ("norm_ip.linear.weight", "norm_ip.linear.bias", "to_k_ip.weight", "to_v_ip.weight",
                 "norm_q.weight", "norm_k.weight", "norm_ip_k.weight")
        self.blocks = nn.ModuleDict({
            str(e): nn.ParameterDict({n.replace(".", "_"): nn.Parameter(ip_adapter[f"{e}.{n}"].to(dtype),
                                                                         requires_grad=False) for n in names})
            for e in entries
        })

    def tokens(self, negative: bool, timestep: float, device: torch.device,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Resampled tokens ``[R, N, C]`` and the timestep embedding ``[R, Ct]`` at model time ``timestep``."""
        feats = self.features["n" if negative else "p"]
        first = next(self.resampler.parameters())
        t = torch.full((feats.shape[0],), float(timestep), device=first.device, dtype=torch.float32)
        with torch.no_grad():
            tokens, temb = self.resampler(feats.to(first.device, first.dtype), t)
        if self.concat:  # several references: one key sequence, as diffusers does
            tokens, temb = tokens.reshape(1, -1, tokens.shape[-1]), temb[:1]
        return tokens.to(device, dtype), temb.to(device, dtype)

    def block(self, entry: int) -> nn.ParameterDict:
        return self.blocks[str(entry)]


@dataclass(eq=False)
class DitApplication:
    """One adapter on one model: the blocks it acts on, its sigma window, mask and device state.

    ``frame_weights`` (batch mode) scales the term of latent row i; ``mask`` is a [M, H, W] MASK the
    host resizes to the image-token grid. Never modified after it is built: clones share it.
    """

    kind: ModelKind
    label: str
    targets: tuple[Target, ...]
    state: nn.Module
    sigma_start: float = 1e9
    sigma_end: float = 0.0
    mask: torch.Tensor | None = None
    frame_weights: torch.Tensor | None = None
    heads: int = 1
    _mask_cache: DeviceCache = field(default_factory=lambda: DeviceCache(device_at=1), repr=False, compare=False)

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def token_mask(self, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The mask on the image-token grid, ``[M, gh*gw, 1]`` (cached per grid and device)."""
        if self.mask is None:
            return None

        def make() -> torch.Tensor:
            m = torch.nn.functional.interpolate(self.mask.float().unsqueeze(1), size=grid, mode="bilinear",
                                                align_corners=False)
            return m.reshape(m.shape[0], -1, 1).to(device, dtype)

        return self._mask_cache.get((grid, device, dtype), make)
