"""Operations on encoder outputs before projection: combining several reference images."""

from __future__ import annotations

import torch

from .errors import IPAdapterError

COMBINE_METHODS = ["concat", "add", "subtract", "average", "norm average"]
COMBINE_METHODS_ALL = COMBINE_METHODS + ["max", "min"]


def combine(embeds: torch.Tensor, method: str) -> torch.Tensor:
    """Reduce N embeddings (dim 0) to one; ``concat`` keeps them all (their tokens are concatenated).

    ``norm average`` averages the unit-length embeddings (per vector, over the feature axis) and
    restores the mean length, so every image counts equally whatever its magnitude.
    """
    if embeds.shape[0] == 0:
        raise IPAdapterError("There are no embeds to combine (an empty batch).", expected="at least one image",
                             fix="Connect a non-empty image batch.", input="image")
    if method == "concat" or embeds.shape[0] == 1:
        return embeds
    if method == "add":
        return embeds.sum(0, keepdim=True)
    if method == "subtract":
        return embeds[:1] - embeds[1:].mean(0, keepdim=True)
    if method == "average":
        return embeds.mean(0, keepdim=True)
    if method == "norm average":
        norms = embeds.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (embeds / norms).mean(0, keepdim=True) * norms.mean(0, keepdim=True)
    if method == "max":
        return embeds.max(0, keepdim=True).values
    if method == "min":
        return embeds.min(0, keepdim=True).values
    raise IPAdapterError(
        f"Unknown combine method '{method}'.", expected=", ".join(COMBINE_METHODS_ALL),
        fix="Pick a method from the list.", input="combine_embeds",
    )


def check_finite(t: torch.Tensor, what: str, input: str) -> None:
    if not torch.isfinite(t).all():
        raise IPAdapterError(
            f"The {what} contains NaN or infinite values.",
            expected="finite numbers", fix="Check the node that produced it (a broken image, mask or embeds file).",
            input=input,
        )
