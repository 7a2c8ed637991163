"""Shared pieces of the host tier's Flux / SD3.5 tests: reduced models, tiny encoders, adapter files in the
published layouts at reduced widths, applying through the pack's nodes and sampling with ComfyUI's own sampler.

Everything is built once per test session (``harness.CACHE``). Import after the ``pack`` fixture booted ComfyUI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tests.fixtures import dit_adapters, dit_encoders, dit_models
from tests.host import harness

# (fixture name in dit_adapters.REDUCED, container, model family)
ADAPTERS = {
    "xlabs": ("xlabs-v1", "safetensors", "flux"),
    "xlabs-v2": ("xlabs-v2", "safetensors", "flux"),
    "instantx": ("instantx-flux", "bin", "flux"),
    "sd3": ("instantx-sd3", "bin", "sd3"),
}
LATENT = 16  # 16x16 latent -> 8x8 = 64 image tokens


def cached(key, make):
    if key not in harness.CACHE:
        harness.CACHE[key] = make()
    return harness.CACHE[key]


def model(family: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    build = dit_models.build_flux if family == "flux" else dit_models.build_sd3
    return cached(("dit-model", family, seed, dtype), lambda: build(seed=seed, dtype=dtype))


def encoders(workdir: Path, clip_vision_dir: Path) -> dict:
    """The tiny ViT-L (XLabs) and SigLIP (InstantX) encoders; the SigLIP file (with its head) is in clip_vision."""
    def make():
        siglip = dit_encoders.tiny_siglip_vision(workdir)
        dit_encoders.write_tiny_siglip_file(clip_vision_dir / "tiny-siglip-dit.safetensors", siglip)
        return {"vit-l": dit_encoders.tiny_vit_l(workdir), "siglip": siglip}
    return cached("dit-encoders", make)


def adapter_file(ipadapter_dir: Path, name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> str:
    """Copy a reduced published-layout adapter into the ipadapter folder; return its listed name."""
    fixture, container, _ = ADAPTERS[name]
    src = dit_adapters.cached_dit_adapter(fixture, container=container, seed=seed, dtype=dtype)
    rel = f"dit/{name}-seed{seed}-{str(dtype).removeprefix('torch.')}{src.suffix}"
    dst = Path(ipadapter_dir) / rel
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    return rel


def load(ipadapter_dir: Path, name: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    return harness.run_node("IPAdapterModelLoader", ipadapter_file=adapter_file(ipadapter_dir, name, seed, dtype))[0]


def encoder_for(name: str, encs: dict):
    return encs["vit-l"] if name.startswith("xlabs") else encs["siglip"]


def apply(model_, ipadapter, image: torch.Tensor, clip_vision, weight: float = 1.0, node: str = "IPAdapterAdvanced",
          **options):
    inputs = dict(model=model_, ipadapter=ipadapter, image=image, weight=weight, weight_type="linear",
                  combine_embeds="concat", start_at=0.0, end_at=1.0, embeds_scaling="V only", clip_vision=clip_vision)
    inputs.update(options)
    return harness.run_node(node, **inputs)[0]


def conditioning(family: str, seed: int) -> list:
    return (dit_models.flux_conditioning if family == "flux" else dit_models.sd3_conditioning)(seed=seed)


def sample(model_, family: str, *, cfg: float = 1.0, steps: int = 2, seed: int = 7, batch: int = 1,
           sampler: str = "euler") -> torch.Tensor:
    """KSampler's path (comfy.sample.sample) on a 16x16 latent; cfg 1 runs the positive chunk only."""
    import comfy.sample

    latent = torch.zeros(batch, 16, LATENT, LATENT)
    noise = comfy.sample.prepare_noise(latent, seed)
    with torch.inference_mode():
        out = comfy.sample.sample(model_, noise, steps, cfg, sampler, "simple", conditioning(family, 1),
                                  conditioning(family, 2), latent, disable_pbar=True, seed=seed)
    assert torch.isfinite(out).all()
    return out


def hooks_on(module: torch.nn.Module) -> int:
    """How many forward hooks and pre-hooks any sub-module carries."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def reference_image(seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(seed))
