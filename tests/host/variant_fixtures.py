"""Models, adapters and images shared by the apply-variant host tests (built once per session).

Plus-kind adapters here read the tiny CLIP vision's 64-wide hidden states: their Resampler is a
small one (the layout detection reads dim, heads, depth and widths from the tensors) fitted to the
test UNet's attn2 widths, so plus/composition/Kolors paths run in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.fixtures import adapters as fx
from tests.fixtures.comfy_models import diffusers_widths, family_of
from tests.host import adapters, harness, probe

TINY_HIDDEN = 64
ADV = dict(combine_embeds="concat", start_at=0.0, end_at=1.0, embeds_scaling="V only")


def tiny_resampler(dim: int, heads: int, output_dim: int, depth: int, ff_mult: int) -> list[fx.TensorSpec]:
    specs: list[fx.TensorSpec] = [("latents", (1, 16, dim), "latents")]
    specs += fx._linear("proj_in", dim, TINY_HIDDEN)
    specs += fx._perceiver_layers("", dim, heads, depth=depth, ff_mult=ff_mult)
    return specs + fx._linear("proj_out", output_dim, dim) + fx._layer_norm("norm_out", output_dim)


def write_plus(directory: Path, filename: str, model, seed: int = 0, kolors: bool = False) -> Path:
    """A plus (or, with ``kolors``, Kolors-plus: Resampler width 2048) adapter for ``model`` and the tiny encoder."""
    context = harness.context_dim(model)
    published = "ip_adapter_plus_general.bin" if kolors else (
        "ip-adapter-plus_sd15.safetensors" if context == 768 else "ip-adapter-plus_sdxl_vit-h.safetensors")
    proj = tiny_resampler(2048, 1, context, 1, 1) if kolors else tiny_resampler(128, 2, context, 2, 2)
    return write_fitted(directory, filename, model, published, proj, seed)


def write_fitted(directory: Path, filename: str, model, published: str, image_proj: list[fx.TensorSpec],
                 seed: int = 0) -> Path:
    """The ``published`` file's layout with its projection replaced by ``image_proj`` (a smaller one, fitted to
    the tiny encoder) and its K/V sized for ``model``'s sites; the container follows the file name."""
    lay = fx.layout(published)
    nested = {
        "image_proj": {s[0]: fx._tensor(s, "image_proj", seed, torch.float16, "cpu") for s in image_proj},
        lay.section: {s[0]: fx._tensor(s, "ip_adapter", seed, torch.float16, "cpu")
                      for s in fx.ip_adapter_specs(lay, diffusers_widths(model))},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    fx.save_state_dict(nested, path, "safetensors" if filename.endswith(".safetensors") else "bin")
    return path


def load_path(path) -> object:
    """What IPAdapterModelLoader returns for a file (it may live outside the model folders)."""
    pipeline = harness.pack_module("nodes.pipeline")
    return pipeline.Pipeline(adapter=pipeline.load_adapter(str(path)), adapter_file=str(path))


def images() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(21)
    ramp = torch.linspace(0, 1, 224)
    smooth = torch.stack([ramp[:, None].expand(224, 224), ramp[None, :].expand(224, 224), 1 - ramp[:, None] * ramp],
                         dim=-1)  # a colour gradient: its features differ clearly from the noise reference's
    return {"B": smooth.unsqueeze(0).contiguous(), "wide": torch.rand(1, 300, 400, 3, generator=gen),
            "big": torch.rand(1, 448, 448, 3, generator=gen)}


def setup(unet_name: str, unet, ipadapter_dir, clip_vision, reference_image) -> dict:
    """Model, basic + plus adapters, images, unpatched latents (batch 1 and 2) and captured site inputs."""
    key = ("variants", unet_name)
    if key not in harness.CACHE:
        model = unet(unet_name)
        folder = Path(ipadapter_dir) / "variants"
        plus_name = f"{unet_name}-tinyplus.safetensors"
        harness.CACHE[key] = dict(
            name=unet_name, family=family_of(unet_name), model=model, clip_vision=clip_vision,
            basic=adapters.load(adapters.adapter_file(ipadapter_dir, unet_name, model)),
            plus=load_path(write_plus(folder, plus_name, model)),
            A=reference_image, **images(),
            base=harness.sample(model), base2=harness.sample(model, batch=2),
            inputs=probe.capture(model),
        )
    return harness.CACHE[key]


def changed(latent: torch.Tensor, base: torch.Tensor) -> bool:
    return (latent - base).abs().max().item() > 1e-3 * base.abs().max().item()


def advanced(s: dict, image, weight: float = 1.0, weight_type: str = "linear", adapter: str = "basic", **options):
    return adapters.apply(s["model"], s[adapter], image, s["clip_vision"], weight=weight, weight_type=weight_type,
                          **options)


def same_as(x: torch.Tensor, target: torch.Tensor, other: torch.Tensor, rel: float = 0.02) -> bool:
    """``x`` matches ``target`` far more closely than ``target`` differs from ``other``."""
    return (x - target).abs().max().item() <= rel * (target - other).abs().max().item()


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() <= rel * scale
