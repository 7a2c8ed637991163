"""A test-only ComfyUI custom node: seeded random text conditioning for Flux.1 and SD3.5.

The real text encoders (T5-XXL, CLIP-L/G) are many gigabytes; the real-server tests need only the
tensors they produce, at the published widths. Copied into the test server's custom_nodes folder by
tests/host/test_dit_server.py (never shipped with the pack). Plain torch, no imports from the repo.
"""

from __future__ import annotations

import torch

# context (T5) width, pooled width, and whether the family reads a guidance value (Flux.1-dev).
FAMILIES = {"flux": (4096, 768, True), "sd3": (4096, 2048, False)}


class IPASTestConditioning:
    """[[context [1, T, 4096], {"pooled_output": [1, P], ("guidance": g)}]] from a seeded generator."""

    CATEGORY = "_for_testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "family": (sorted(FAMILIES),),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
            "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
        }}

    def make(self, family: str, seed: int, tokens: int, guidance: float):
        context, pooled, has_guidance = FAMILIES[family]
        gen = torch.Generator().manual_seed(seed)
        extras: dict = {"pooled_output": torch.randn(1, pooled, generator=gen)}
        if has_guidance:
            extras["guidance"] = guidance
        return ([[torch.randn(1, tokens, context, generator=gen), extras]],)


NODE_CLASS_MAPPINGS = {"IPASTestConditioning": IPASTestConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"IPASTestConditioning": "IPAS test conditioning (random)"}
