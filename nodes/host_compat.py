"""Bridges over ComfyUI versions, one small function each (feature-detected, never by version string).

The pack runs on ComfyUI 0.3.64 (October 2025, what the tests run) up to 0.38 (read, not run: see
docs/compat.md, "Host versions"). Each function names the host change it bridges.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def clip_preprocess() -> Callable[..., torch.Tensor]:
    """ComfyUI's CLIP image preprocessing (resize, crop or squash, normalise).

    ComfyUI PR #11586 (2026) moved it to ``comfy.clip_model`` and left ``comfy.clip_vision.clip_preprocess``
    as an alias marked for removal; 0.3.64 has only the latter. The new home first, the old one else.
    """
    import comfy.clip_model

    found = getattr(comfy.clip_model, "clip_preprocess", None)
    if found is None:
        import comfy.clip_vision

        found = comfy.clip_vision.clip_preprocess
    return found
