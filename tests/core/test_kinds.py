"""Model-kind detection: every published layout is recognised from its tensors alone."""

from __future__ import annotations

import os

import pytest
import torch

from ipadapter_core.errors import IPAdapterError
from ipadapter_core.kinds import detect_kind
from ipadapter_core.loading import load_adapter_file, split_adapter_sections
from tests.fixtures.adapters import ADAPTER_LAYOUTS, adapter_state_dict, image_proj_faceid_plus, layout, write_adapter

NAMES = list(ADAPTER_LAYOUTS)
FACE_KINDS = {"faceid", "faceid_plus", "faceid_portrait", "faceid_portrait_unnorm", "kolors_faceid_plus"}


def _sections(name: str, **kw) -> tuple[dict, dict]:
    """Shape-only (meta) sections: detection reads shapes, so no random numbers are paid for."""
    weights = split_adapter_sections(adapter_state_dict(name, device="meta", **kw), name)
    return weights.image_proj, weights.ip_adapter


@pytest.mark.parametrize("name", NAMES)
def test_every_published_layout_is_detected(name: str) -> None:
    lay = ADAPTER_LAYOUTS[name]
    kind = detect_kind(*_sections(name), name=name)
    assert kind.kind == lay.kind
    assert kind.family == lay.family
    assert kind.tokens == lay.tokens
    assert kind.encoder_output == lay.encoder_output
    assert kind.encoder_width == lay.encoder_width
    assert kind.context_dim == lay.context_dim
    assert kind.face == (lay.kind in FACE_KINDS)
    assert kind.needs_lora == lay.lora
    assert kind.image_size == (336 if lay.family == "kolors" else 224)


@pytest.mark.parametrize("name", NAMES)
def test_built_projection_matches_the_file_exactly(name: str) -> None:
    """The module ``build`` makes has the file's parameter names and shapes (strict loading works)."""
    image_proj, ip_adapter = _sections(name)
    kind = detect_kind(image_proj, ip_adapter, name=name)
    with torch.device("meta"):
        module = kind.build()
    built = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert built == {k: tuple(v.shape) for k, v in image_proj.items()}


def test_face_specific_flags() -> None:
    plus = detect_kind(*_sections("ip-adapter-faceid-plusv2_sd15.bin"))
    assert plus.plus_v2_possible and not plus.shortcut and plus.face_embedding == "normed"
    kolors = detect_kind(*_sections("Kolors-IP-Adapter-FaceID-Plus.bin"))
    assert kolors.shortcut and not kolors.needs_lora
    unnorm = detect_kind(*_sections("ip-adapter-faceid-portrait_sdxl_unnorm.bin"))
    assert unnorm.face_embedding == "raw"
    portrait = detect_kind(*_sections("ip-adapter-faceid-portrait-v11_sd15.bin"))
    assert portrait.face_embedding == "normed" and not portrait.needs_lora


def test_detection_does_not_depend_on_the_number_of_unet_layers() -> None:
    """Reduced test UNets: only the context width (the K/V in-dim) matters, not the layer count."""
    kind = detect_kind(*_sections("ip-adapter-plus_sdxl_vit-h.safetensors", sites=[64, 128]))
    assert (kind.kind, kind.family, kind.context_dim) == ("plus", "sdxl", 2048)


@pytest.mark.parametrize(
    ("content", "misleading_name"),
    [
        ("ip-adapter-faceid-portrait_sdxl.bin", "ip-adapter-faceid-portrait_sdxl_unnorm.bin"),
        ("ip-adapter-faceid-portrait_sdxl_unnorm.bin", "ip-adapter_sdxl_vit-h.bin"),
        ("ip-adapter_sd15.safetensors", "ip-adapter-faceid-plusv2_sd15.safetensors"),
        ("ip-adapter-plus_sd15.safetensors", "my favourite model (copy).safetensors"),
        ("ip-adapter-faceid_sd15.bin", "ip-adapter-plus_sd15.bin"),
    ],
)
def test_renamed_file_is_detected_by_content(tmp_path, content: str, misleading_name: str) -> None:
    lay = ADAPTER_LAYOUTS[content]
    written = write_adapter(content, tmp_path, sites=[64, 64, 128])
    renamed = os.path.join(tmp_path, misleading_name)
    os.replace(written, renamed)
    weights = load_adapter_file(renamed)
    kind = detect_kind(weights.image_proj, weights.ip_adapter, name=misleading_name)
    assert (kind.kind, kind.family) == (lay.kind, lay.family)


def _ip_adapter(context: int) -> dict[str, torch.Tensor]:
    return {f"{n}.to_{kv}_ip.weight": torch.zeros(320, context) for n in (1, 3) for kv in "kv"}


@pytest.mark.parametrize(
    "image_proj",
    [
        {"foo.weight": torch.zeros(4, 4), "bar.bias": torch.zeros(4)},
        # A Flux-style projection: a single linear layer and no norm.
        {"proj.weight": torch.zeros(3072, 1024), "proj.bias": torch.zeros(3072)},
        # Basic layout whose norm width disagrees with the UNet context width.
        {
            "proj.weight": torch.zeros(4 * 1024, 1024),
            "proj.bias": torch.zeros(4096),
            "norm.weight": torch.ones(1024),
            "norm.bias": torch.zeros(1024),
        },
    ],
    ids=["unknown-keys", "no-norm", "context-mismatch"],
)
def test_layout_matching_nothing_is_a_clear_error(image_proj: dict) -> None:
    with pytest.raises(IPAdapterError) as err:
        detect_kind(image_proj, _ip_adapter(768), name="mystery.safetensors")
    message = str(err.value)
    assert "mystery.safetensors" in message
    assert "matches no known kind" in message
    assert "768" in message  # the context width it did find


@pytest.mark.parametrize(
    ("projection_from", "attention_from"),
    [
        ("ip-adapter_sd15.safetensors", "ip-adapter_sdxl_vit-h.safetensors"),
        ("ip-adapter-plus_sdxl_vit-h.safetensors", "ip-adapter-plus_sd15.safetensors"),
        ("ip-adapter-full-face_sd15.safetensors", "ip-adapter_sdxl_vit-h.safetensors"),
        ("ip-adapter-faceid-portrait-v11_sd15.bin", "ip-adapter-faceid-portrait_sdxl.bin"),
        ("ip-adapter-faceid-plusv2_sdxl.bin", "ip-adapter-faceid-plusv2_sd15.bin"),
    ],
)
def test_projection_and_attention_from_different_families_are_refused(projection_from, attention_from) -> None:
    """A file stitched from two families must not be detected as either: its tokens would not fit the K/V."""
    image_proj = adapter_state_dict(projection_from, device="meta")["image_proj"]
    ip_adapter = adapter_state_dict(attention_from, device="meta", sites=[640, 1280])["ip_adapter"]
    with pytest.raises(IPAdapterError):
        detect_kind(image_proj, ip_adapter, name="stitched")


@pytest.mark.parametrize("name", ["ip-adapter-faceid-plusv2_sd15.bin", "Kolors-IP-Adapter-FaceID-Plus.bin"])
def test_faceid_plus_perceiver_depth_heads_and_ff_are_read_from_the_tensors(name: str) -> None:
    """A FaceID-Plus perceiver of another depth/heads/ff_mult than the published 4/dim÷64/4 still builds exactly."""
    lay = layout(name)
    image_proj, ip_adapter = _sections(name)
    _, context, clip_dim, tokens = lay.projection
    image_proj = {key: torch.empty(shape, device="meta")
                  for key, shape, _ in image_proj_faceid_plus(context, clip_dim, tokens, depth=2, heads=3, ff_mult=1)}
    kind = detect_kind(image_proj, ip_adapter, name=name)
    assert kind.kind == lay.kind
    with torch.device("meta"):
        module = kind.build()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == {k: tuple(v.shape)
                                                                          for k, v in image_proj.items()}
    assert len(module.perceiver_resampler.layers) == 2
