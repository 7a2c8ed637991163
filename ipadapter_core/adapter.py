"""A loaded adapter file and the building of one application of it to a model."""

from __future__ import annotations

import os

import torch

from .attention import Application, SiteKV, SpatialMask, fit_rows
from .errors import IPAdapterError
from .kinds import ModelKind, detect_kind
from .limits import MAX_KV_BYTES, check_frames
from .loading import AdapterWeights, load_adapter_file
from .sites import Site, match_sites
from .weighting import LayerWeight

EMBEDS_SCALING = ["V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty"]


class IPAdapterModel:
    """An adapter file: its kind, its projection weights and its K/V weights (one copy, shared by every use)."""

    def __init__(self, weights: AdapterWeights, name: str = "") -> None:
        self.name = name or os.path.basename(weights.path) or "adapter"
        self.weights = weights
        self.kind: ModelKind = detect_kind(weights.image_proj, weights.ip_adapter, self.name)

    @classmethod
    def from_file(cls, path: str) -> IPAdapterModel:
        return cls(load_adapter_file(path), os.path.basename(path))

    def projection(self) -> torch.nn.Module:
        """The projection model, built from the file's weights (fp32). Not kept: see ``project``."""
        with torch.device("meta"):  # no point initialising weights the file replaces
            module = self.kind.build()
        try:
            module.load_state_dict({k: v.float() for k, v in self.weights.image_proj.items()}, strict=True,
                                   assign=True)
        except RuntimeError as exc:
            raise IPAdapterError(
                f"'{self.name}' looks like a {self.kind.label} adapter but its weights do not load: "
                f"{str(exc).splitlines()[0]}",
                expected=f"a complete {self.kind.label} file", fix="Download the file again.",
            ) from None
        return module.float().eval().requires_grad_(False)

    def project(self, embeds: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Encoder output (or face embeds, then CLIP embeds) -> image tokens ``[N, T, width]``, in fp32.

        The model is built for the call and dropped after it: it runs once per application, and an fp16
        file's fp32 copy (a Kolors FaceID perceiver is over 1 GB) would otherwise stay for the file's life.
        """
        args = tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)
        kwargs = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        with torch.no_grad():
            return self.projection()(embeds.float(), *args, **kwargs)

    def kv_weights(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ia = self.weights.ip_adapter
        return ia[f"{n}.to_k_ip.weight"], ia[f"{n}.to_v_ip.weight"]


def _scale_kv(k: torch.Tensor, v: torch.Tensor, w: float | torch.Tensor, mode: str, inner: int):
    """Fold a weight into K/V (K+V modes) or leave it as an output scale (V only).

    ``w`` is a float, or one weight per row of k/v (batch mode with a per-frame schedule).
    """
    if mode == "V only":
        return k, v, w
    if mode in ("K+V w/ C penalty", "K+mean(V) w/ C penalty"):
        w = w * inner / 1280
    if isinstance(w, torch.Tensor):
        w = w.reshape(-1, 1, 1).to(k.device)
    if mode == "K+mean(V) w/ C penalty":
        mean = v.mean(dim=1, keepdim=True)
        return k * w, (v - mean) + mean * w, 1.0
    if mode in ("K+V", "K+V w/ C penalty"):
        return k * w, v * w, 1.0
    raise _unknown_scaling(mode)


def _unknown_scaling(mode: object) -> IPAdapterError:
    return IPAdapterError(f"Unknown embeds_scaling '{mode}'.", expected=", ".join(EMBEDS_SCALING),
                          fix="Pick a scaling mode from the list.", input="embeds_scaling")


def build_application(
    adapter: IPAdapterModel,
    sites: list[Site],
    cond: torch.Tensor,
    uncond: torch.Tensor,
    weights: dict[tuple, LayerWeight],
    *,
    embeds_scaling: str = "V only",
    alt_cond: torch.Tensor | None = None,
    unfold: bool = False,
    sigma_start: float = 1e9,
    sigma_end: float = 0.0,
    mask: torch.Tensor | None = None,
    frame_weights: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> Application:
    """Project image tokens through every site's K/V once.

    ``cond``/``uncond``/``alt_cond`` are image tokens ``[N, T, C]``. Without ``unfold`` the N token
    sets are concatenated (every latent sees all images); with it, image i conditions latent i.
    Sites whose weight is 0 get no entry and cost nothing at sampling time. ``frame_weights`` (batch
    mode only) multiplies each latent's weight: a per-frame schedule from 'IPAdapter Weights'.
    """
    if embeds_scaling not in EMBEDS_SCALING:  # checked even when no site gets K/V (every weight 0)
        raise _unknown_scaling(embeds_scaling)
    if cond.shape[0] == 0 or uncond.shape[0] == 0:
        raise IPAdapterError("There are no reference embeds (an empty batch).", expected="at least one image",
                             fix="Connect a non-empty image batch.", input="image")
    numbering = match_sites(sites, adapter.weights.ip_adapter, f"'{adapter.name}', {adapter.kind.label}")
    if frame_weights is not None:
        if not unfold:
            raise ValueError("frame_weights need unfold=True")
        frame_weights = frame_weights.float().reshape(-1)
        check_frames(frame_weights.shape[0], "weight", "The per-frame weight list")
        if embeds_scaling != "V only":  # each frame's weight is folded into its own K/V rows
            rows = max(cond.shape[0], frame_weights.shape[0])
            _check_kv_budget(adapter, sites, weights, cond, rows)
            cond, uncond = fit_rows(cond, rows), fit_rows(uncond, rows)
            alt_cond = fit_rows(alt_cond, rows) if alt_cond is not None else None
            frame_weights = fit_rows(frame_weights, rows)
        # V only: K/V keep one row per reference image and the weights stay a per-frame output scale; both are
        # fitted to the latents that exist when the sampler runs (RowLayout.take), so no frame is built twice.
    per_site: dict[tuple, SiteKV] = {}
    for site in sites:
        lw = weights.get(site.key)
        if lw is None or lw.weight == 0 or (frame_weights is not None and not frame_weights.any()):
            continue
        w = lw.weight if frame_weights is None else lw.weight * frame_weights
        wk, wv = (w.to(device, torch.float32) for w in adapter.kv_weights(numbering[site.key]))
        source = alt_cond if (lw.alt and alt_cond is not None) else cond
        kc, vc = _project_kv(source, wk, wv, device)
        ku, vu = _project_kv(fit_rows(uncond, source.shape[0]), wk, wv, device)
        kc, vc, scale = _scale_kv(kc, vc, w, embeds_scaling, site.inner_dim)
        ku, vu, _ = _scale_kv(ku, vu, w, embeds_scaling, site.inner_dim)
        if not unfold:
            kc, vc, ku, vu = (t.reshape(1, -1, t.shape[-1]) for t in (kc, vc, ku, vu))
        if lw.swap:  # the reference feeds the negative branch only; the positive gets nothing
            per_site[site.key] = SiteKV(None, None, kc, vc, scale)
        else:
            per_site[site.key] = SiteKV(kc, vc, ku, vu, scale)
    return Application(
        sites=per_site, sigma_start=sigma_start, sigma_end=sigma_end,
        mask=SpatialMask(mask) if mask is not None else None, label=adapter.name,
    )


def _check_kv_budget(adapter: IPAdapterModel, sites: list[Site], weights: dict[tuple, LayerWeight],
                     cond: torch.Tensor, rows: int) -> None:
    """Refuse per-frame K/V (K+V scaling with a long weight list) that would not fit in memory."""
    extra = rows - cond.shape[0]
    if extra <= 0:
        return
    width = sum(site.inner_dim for site in sites if (lw := weights.get(site.key)) is not None and lw.weight != 0)
    size = extra * int(cond.shape[1]) * width * 4 * 4  # cond and uncond, K and V, fp32
    if size > MAX_KV_BYTES:
        raise IPAdapterError(
            f"The {rows:,}-frame weight list with '{adapter.name}' would build {size / 2**30:.1f} GiB of image keys "
            "and values (each frame's weight is folded into its own K/V with this embeds_scaling).",
            expected=f"at most {MAX_KV_BYTES / 2**30:.0f} GiB", input="weight",
            fix="Use embeds_scaling 'V only' (per-frame weights then cost nothing extra), or fewer frames.")


def _project_kv(tokens: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Image keys/values, computed on ``device`` and kept on the CPU: the patch copies them to wherever
    the model runs and drops those copies when ComfyUI offloads the model."""
    tokens = tokens.to(device, torch.float32)
    return (tokens @ wk.T).cpu(), (tokens @ wv.T).cpu()
