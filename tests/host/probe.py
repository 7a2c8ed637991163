"""Per-site instruments for the attn2 patches a model carries.

``capture`` runs one real sampling step of an *unpatched* model and keeps, for every attn2 site,
the exact ``q, k, v, extra_options`` the host passed. ``contributions`` then replays those inputs
through whatever replacement a patched model has at each site and returns what the patch adds on
top of the block's own attention. Every model is compared on identical inputs, so per-site
contributions of different weight types or stacks are directly comparable (no drift through the
UNet), and a site the patch does not act on contributes exactly zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from tests.fixtures.comfy_models import attn2_sites
from tests.host import harness


@dataclass
class SiteInput:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    extra: dict


def base_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
    """The block's own cross-attention, computed the way the host does it."""
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, extra["n_heads"], attn_precision=extra.get("attn_precision"),
                               transformer_options=extra)


class _Recorder:
    """An attn2 replacement that records its first call and otherwise does what the host would."""

    def __init__(self, store: dict, key: tuple) -> None:
        self.store, self.key = store, key

    def __call__(self, q, k, v, extra):
        if self.key not in self.store:
            kept = {k_: v_ for k_, v_ in extra.items() if k_ not in ("wrappers", "callbacks")}
            self.store[self.key] = SiteInput(q.clone(), k.clone(), v.clone(), copy.copy(kept))
        return base_attention(q, k, v, extra)

    def __deepcopy__(self, memo):
        return self


def capture(model, **sample_kwargs) -> dict[tuple, SiteInput]:
    """Each site's inputs from the first UNet call of a 1-step, cfg > 1 run of ``model`` (unpatched)."""
    store: dict[tuple, SiteInput] = {}
    probe = model.clone()
    for key, _ in attn2_sites(model):
        probe.set_model_attn2_replace(_Recorder(store, key), *key)
    harness.sample(probe, steps=1, **sample_kwargs)
    assert set(store) == {key for key, _ in attn2_sites(model)}, "some attn2 sites never ran"
    assert sorted(store[next(iter(store))].extra["cond_or_uncond"]) == [0, 1], "expected cond and uncond chunks"
    return store


def patch_at(model, key: tuple):
    """The attn2 replacement the host would call at ``key`` (3-tuple first, then the 2-tuple)."""
    table = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    return table.get(key, table.get(key[:2]))


def contributions(model, inputs: dict[tuple, SiteInput], **extra_overrides) -> dict[tuple, torch.Tensor]:
    """What ``model``'s patch adds at every site, given the captured inputs (zeros where unpatched)."""
    out: dict[tuple, torch.Tensor] = {}
    with torch.inference_mode():
        for key, site in inputs.items():
            extra = {**site.extra, **extra_overrides}
            base = base_attention(site.q, site.k, site.v, extra)
            patch = patch_at(model, key)
            if patch is None:
                out[key] = torch.zeros_like(base)
            else:
                out[key] = patch(site.q, site.k, site.v, dict(extra)) - base
    return out


def chunk_rows(inputs: dict[tuple, SiteInput], chunk: int) -> slice:
    """Rows of the batch that belong to cond (0) or uncond (1) in the captured layout."""
    extra = next(iter(inputs.values())).extra
    order = list(extra["cond_or_uncond"])
    per = next(iter(inputs.values())).q.shape[0] // len(order)
    i = order.index(chunk)
    return slice(i * per, (i + 1) * per)


def options_snapshot(obj, _depth: int = 0):
    """A comparable picture of model_options: containers by value, everything else by identity."""
    if isinstance(obj, dict):
        return {k: options_snapshot(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(options_snapshot(v, _depth + 1) for v in obj)
    if isinstance(obj, (str, int, float, bool, type(None))):
        return obj
    return ("object", type(obj).__name__, id(obj))
