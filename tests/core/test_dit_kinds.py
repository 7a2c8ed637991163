"""Flux XLabs, Flux InstantX and SD3.5 InstantX adapters: detection, loading, encoders, presets, doctor.

Published sizes are checked as shapes only (meta tensors); reduced widths go through real files in
every published container. Expected values come from the fixture factories' parameters.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
import torch.nn.functional as F

from ipadapter_core import config
from ipadapter_core.adapter import IPAdapterModel
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.inventory import clip_vision_encoder
from ipadapter_core.kinds import detect_kind
from ipadapter_core.loading import load_tensor_file, split_adapter_sections
from tests.fixtures.adapters import adapter_state_dict
from tests.fixtures.dit_adapters import (
    FLUX_CONTEXT,
    FLUX_DOUBLE,
    FLUX_HIDDEN,
    FLUX_SINGLE,
    REDUCED,
    SIGLIP_WIDTH,
    VIT_L_EMBEDS,
    cached_dit_adapter,
    instantx_flux_state_dict,
    instantx_sd3_state_dict,
    xlabs_state_dict,
)

HAS_TIME_RESAMPLER = importlib.util.find_spec("ipadapter_core.dit.time_resampler") is not None
SD3_HIDDEN, SD3_BLOCKS, SD3_QUERIES, SD3_RDIM = 2432, 38, 64, 1280  # instantx_sd3_specs' published defaults

# name: (factory, widths, kind, tokens, hidden, blocks, token width, encoder output, encoder width, encoder id)
FULL = {
    "xlabs-v1": (xlabs_state_dict, dict(tokens=4), "xlabs_flux", 4, FLUX_HIDDEN, FLUX_DOUBLE, FLUX_CONTEXT,
                 "image_embeds", VIT_L_EMBEDS, "vit-l"),
    "xlabs-v2": (xlabs_state_dict, dict(tokens=16), "xlabs_flux", 16, FLUX_HIDDEN, FLUX_DOUBLE, FLUX_CONTEXT,
                 "image_embeds", VIT_L_EMBEDS, "vit-l"),
    "instantx-flux": (instantx_flux_state_dict, {}, "instantx_flux", 128, FLUX_HIDDEN, FLUX_DOUBLE + FLUX_SINGLE,
                      FLUX_CONTEXT, "siglip_pooled", SIGLIP_WIDTH, "siglip-384"),
    "instantx-sd3": (instantx_sd3_state_dict, {}, "instantx_sd3", SD3_QUERIES, SD3_HIDDEN, SD3_BLOCKS, SD3_HIDDEN,
                     "penultimate_hidden_states", SIGLIP_WIDTH, "siglip-384"),
}
LABELS = {"xlabs-v1": "Flux XLabs v1 (4 tokens)", "xlabs-v2": "Flux XLabs v2 (16 tokens)",
          "instantx-flux": "Flux InstantX (128 tokens)", "instantx-sd3": "SD3.5-Large InstantX (64 tokens)"}
ARCH = {"xlabs_flux": ("flux", "flux", 224), "instantx_flux": ("flux", "flux", 384),
        "instantx_sd3": ("sd3", "mmdit", 384)}


def _meta_sections(name: str, **override) -> tuple[dict, dict]:
    factory, widths, *_ = FULL[name]
    weights = split_adapter_sections(factory(device="meta", **{**widths, **override}), name)
    return weights.image_proj, weights.ip_adapter


def _reduced_expectation(name: str) -> dict:
    widths = REDUCED[name][1]
    if name.startswith("xlabs"):
        return dict(tokens=widths["tokens"], hidden=widths["hidden"], blocks=widths["n_double"], context=FLUX_CONTEXT)
    if name == "instantx-flux":
        return dict(tokens=widths["tokens"], hidden=widths["hidden"], blocks=widths["n_blocks"], context=FLUX_CONTEXT)
    return dict(tokens=widths["queries"], hidden=widths["hidden"], blocks=widths["n_blocks"], context=widths["hidden"])


# --- detection at published size ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(FULL))
def test_published_layouts_are_detected_with_their_sizes(name: str) -> None:
    _, _, kind_id, tokens, hidden, blocks, context, output, width, encoder = FULL[name]
    kind = detect_kind(*_meta_sections(name), name=name)
    family, arch, image_size = ARCH[kind_id]
    assert (kind.kind, kind.family, kind.arch, kind.is_transformer) == (kind_id, family, arch, True)
    assert (kind.tokens, kind.hidden, kind.blocks, kind.context_dim) == (tokens, hidden, blocks, context)
    assert (kind.encoder_output, kind.encoder_width, kind.image_size) == (output, width, image_size)
    assert kind.label == LABELS[name]
    assert config.encoder_for_kind(kind) == encoder
    assert not kind.face and not kind.needs_lora


@pytest.mark.parametrize("name", ["xlabs-v1", "instantx-flux"] + (["instantx-sd3"] if HAS_TIME_RESAMPLER else []))
def test_built_projection_has_the_files_parameters(name: str) -> None:
    image_proj, ip_adapter = _meta_sections(name)
    kind = detect_kind(image_proj, ip_adapter, name=name)
    with torch.device("meta"):
        module = kind.build()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == {k: tuple(v.shape)
                                                                          for k, v in image_proj.items()}


def test_labels_follow_the_tensors_not_the_release() -> None:
    """Token counts other than v1/v2 and an SD3.5 of another width are named by what they are."""
    assert detect_kind(*_meta_sections("xlabs-v1", tokens=8, hidden=64, n_double=3)).label == "Flux XLabs (8 tokens)"
    sd3 = detect_kind(*_meta_sections("instantx-sd3", hidden=128, r_dim=128, queries=8, embed=64, n_blocks=2))
    assert sd3.label == "SD3.5 (hidden 128) InstantX (8 tokens)" and sd3.hidden == 128 and sd3.blocks == 2


@pytest.mark.parametrize("name", list(FULL))
def test_no_dit_adapter_is_misnamed_as_an_sd_kind(name: str) -> None:
    """Regression: InstantX Flux was 'FaceID Portrait SDXL', SD3.5 'SDXL plus', XLabs 'not an IP-Adapter'."""
    kind = detect_kind(*_meta_sections(name), name=name)
    assert kind.family in ("flux", "sd3")
    assert not re.search(r"SDXL|SD1\.5|FaceID|plus", kind.label)


# --- reduced widths through files --------------------------------------------------------------

CONTAINERS = [("xlabs-v1", "safetensors"), ("xlabs-v2", "safetensors"), ("instantx-flux", "bin"),
              ("instantx-flux", "safetensors"), ("instantx-sd3", "bin"), ("instantx-sd3", "safetensors")]


@pytest.mark.parametrize(("name", "container"), CONTAINERS)
def test_reduced_files_load_and_detect_in_every_container(name: str, container: str) -> None:
    path = cached_dit_adapter(name, container)
    adapter = IPAdapterModel.from_file(str(path))
    want = _reduced_expectation(name)
    kind = adapter.kind
    assert kind.kind == FULL[name][2]
    assert (kind.tokens, kind.hidden, kind.blocks, kind.context_dim) == (
        want["tokens"], want["hidden"], want["blocks"], want["context"])
    # The sections hold the factory's tensors (XLabs renamed to diffusers' names, nothing else changed).
    factory, widths = REDUCED[name]
    original = factory(seed=0, dtype=torch.float32, **widths)
    if name.startswith("xlabs"):
        expected = {"image_proj": {k.removeprefix("ip_adapter_proj_model."): v for k, v in original.items()
                                   if k.startswith("ip_adapter_proj_model.")},
                    "ip_adapter": {f"{m[1]}.to_{m[2]}_ip.{m[3]}": v for k, v in original.items()
                                   if (m := re.match(r"double_blocks\.(\d+)\.processor\.ip_adapter_double_stream_"
                                                     r"([kv])_proj\.(weight|bias)$", k))}}
    else:
        expected = original
    for section in ("image_proj", "ip_adapter"):
        got = getattr(adapter.weights, section)
        assert sorted(got) == sorted(expected[section])
        assert all(torch.equal(got[k], expected[section][k]) for k in got)


def test_instantx_flat_safetensors_keeps_section_prefixes() -> None:
    flat = load_tensor_file(str(cached_dit_adapter("instantx-flux", "safetensors")))
    assert all(k.startswith(("image_proj.", "ip_adapter.")) for k in flat)
    assert "ip_adapter.0.to_k_ip.weight" in flat


def test_xlabs_single_block_keys_are_ignored() -> None:
    sd = xlabs_state_dict(hidden=32, tokens=4, n_double=3, context=64, clip_dim=16)
    stray = {f"single_blocks.{i}.processor.ip_adapter_single_stream_{kv}_proj.weight": torch.zeros(32, 64)
             for i in range(2) for kv in "kv"}
    weights = split_adapter_sections({**sd, **stray}, "xlabs.safetensors")
    assert set(weights.image_proj) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    assert set(weights.ip_adapter) == {f"{i}.to_{kv}_ip.{p}" for i in range(3) for kv in "kv"
                                       for p in ("weight", "bias")}
    assert detect_kind(weights.image_proj, weights.ip_adapter).blocks == 3


def test_xlabs_projection_only_file_is_a_clear_error() -> None:
    sd = {k: v for k, v in xlabs_state_dict(device="meta").items() if k.startswith("ip_adapter_proj_model.")}
    with pytest.raises(IPAdapterError, match="XLabs Flux.*per-block K/V"):
        split_adapter_sections(sd, "flux-ip-adapter.safetensors")


# --- projections -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xlabs-v1", "xlabs-v2", "instantx-flux"])
def test_flux_projections_compute_the_published_math(name: str) -> None:
    adapter = IPAdapterModel.from_file(str(cached_dit_adapter(name)))
    kind, p = adapter.kind, adapter.weights.image_proj
    x = torch.randn(2, kind.encoder_width, generator=torch.Generator().manual_seed(7))
    tokens = adapter.project(x)
    assert tokens.shape == (2, kind.tokens, kind.context_dim) and torch.isfinite(tokens).all()
    if kind.kind == "xlabs_flux":
        raw = F.linear(x, p["proj.weight"], p["proj.bias"])
    else:  # Linear -> exact GELU -> Linear
        raw = F.linear(F.gelu(F.linear(x, p["proj.0.weight"], p["proj.0.bias"])), p["proj.2.weight"], p["proj.2.bias"])
    ref = F.layer_norm(raw.reshape(2, kind.tokens, -1), (kind.context_dim,), p["norm.weight"], p["norm.bias"])
    torch.testing.assert_close(tokens, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_TIME_RESAMPLER, reason="ipadapter_core.dit.time_resampler is not there yet")
def test_sd3_projection_builds_and_runs() -> None:
    adapter = IPAdapterModel.from_file(str(cached_dit_adapter("instantx-sd3", "bin")))
    kind, widths = adapter.kind, REDUCED["instantx-sd3"][1]
    module = adapter.projection()
    features = torch.randn(2, 9, kind.encoder_width, generator=torch.Generator().manual_seed(1))
    tokens, temb = module(features, torch.tensor([999.0, 10.0]))
    assert tokens.shape == (2, kind.tokens, kind.context_dim) and temb.shape == (2, widths["r_dim"])
    assert not torch.allclose(tokens[0], tokens[1])  # the timestep changes the tokens


# --- broken files ------------------------------------------------------------------------------


def _small(name: str) -> tuple[dict, dict]:
    if name == "xlabs":
        sd = xlabs_state_dict(hidden=32, tokens=4, n_double=3, context=64, clip_dim=16, device="meta")
    elif name == "instantx":
        sd = instantx_flux_state_dict(hidden=32, tokens=4, n_blocks=4, context=64, siglip=16, device="meta")
    else:
        sd = instantx_sd3_state_dict(n_blocks=3, hidden=64, r_dim=64, queries=4, embed=16, device="meta")
    weights = split_adapter_sections(sd, name)
    return weights.image_proj, weights.ip_adapter


def _drop(sd: dict, pattern: str) -> dict:
    return {k: v for k, v in sd.items() if not re.match(pattern, k)}


BROKEN = {
    "xlabs-missing-block": ("xlabs", lambda p, a: (p, _drop(a, r"1\.")), "Flux XLabs", "entry 1 is missing"),
    "xlabs-missing-bias": ("xlabs", lambda p, a: (p, _drop(a, r"2\.to_v_ip\.bias")), "Flux XLabs", "entry 2 lacks"),
    "xlabs-other-width": ("xlabs", lambda p, a: ({**p, "norm.weight": torch.empty(32, device="meta"),
                                                  "norm.bias": torch.empty(32, device="meta")}, a),
                          "Flux XLabs", "read 64-wide tokens"),
    "instantx-mixed-widths": ("instantx", lambda p, a: (p, {**a, "2.to_k_ip.weight": torch.empty(32, 48,
                                                                                                  device="meta")}),
                              "Flux InstantX", "mixed widths"),
    "instantx-no-block-0": ("instantx", lambda p, a: (p, _drop(a, r"0\.")), "Flux InstantX", "entry 0 is missing"),
    "instantx-with-proj3": ("instantx", lambda p, a: ({**p, "proj.3.weight": torch.empty(64, device="meta")}, a),
                            "Flux InstantX", "proj.3.weight"),
    "sd3-missing-norm-ip": ("sd3", lambda p, a: (p, _drop(a, r"1\.norm_ip\.linear\.weight")), "SD3.5 InstantX",
                            "entry 1 lacks norm_ip.linear.weight"),
    "sd3-missing-layer": ("sd3", lambda p, a: (_drop(p, r"layers\.1\.0\.to_q"), a), "SD3.5 InstantX", "layers"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_half_broken_files_are_named_and_explained(case: str) -> None:
    base, mutate, family, detail = BROKEN[case]
    with pytest.raises(IPAdapterError) as err:
        detect_kind(*mutate(*_small(base)), name="broken.safetensors")
    text = str(err.value)
    assert "broken.safetensors" in text and family in text and detail in text, text
    assert "download it again" in text


def test_transformer_numbering_with_an_sd_projection_is_not_an_sd_kind() -> None:
    """A full-face projection with K/V numbered from 0: matches nothing, and says so instead of 'full face'."""
    image_proj = adapter_state_dict("ip-adapter-full-face_sd15.safetensors", device="meta")["image_proj"]
    ip_adapter = {f"{n}.to_{kv}_ip.weight": torch.empty(320, 768, device="meta") for n in (0, 1, 2) for kv in "kv"}
    with pytest.raises(IPAdapterError) as err:
        detect_kind(image_proj, ip_adapter, name="odd.bin")
    text = str(err.value)
    assert "matches no known kind" in text and "transformer" in text
    assert "Flux.1" in text and "own node packs" not in text


# --- encoders ----------------------------------------------------------------------------------


def test_encoders_with_shared_widths_are_told_apart_by_image_size() -> None:
    assert config.encoder_for_output("image_embeds", 768, 224) == "vit-l"
    assert config.encoder_for_output("image_embeds", 768, 336) == "vit-l-336"
    assert config.encoder_for_output("penultimate_hidden_states", 1024, 336) == "vit-l-336"
    assert config.encoder_from_widths(768, 1024, 224) == "vit-l"
    assert config.encoder_from_widths(768, 1024, 336) == "vit-l-336"
    assert config.encoder_from_widths(768, 1024, 512) is None
    # Old call sites (no size) keep their answer: Kolors' ViT-L-336 comes first.
    assert config.encoder_for_output("penultimate_hidden_states", 1024) == "vit-l-336"
    assert config.encoder_for_output("siglip_pooled", SIGLIP_WIDTH) == "siglip-384"
    assert config.encoder_from_widths(SIGLIP_WIDTH, SIGLIP_WIDTH, 384) == "siglip-384"


def _vision_shapes(hidden: int, positions: int, patch: int, projection: int | None) -> dict[str, torch.Tensor]:
    shapes = {"vision_model.embeddings.position_embedding.weight": torch.empty(positions, hidden, device="meta"),
              "vision_model.embeddings.patch_embedding.weight": torch.empty(hidden, 3, patch, patch, device="meta"),
              "vision_model.post_layernorm.weight": torch.empty(hidden, device="meta")}
    if projection:
        shapes["visual_projection.weight"] = torch.empty(projection, hidden, device="meta")
    return shapes


@pytest.mark.parametrize(("hidden", "positions", "patch", "projection", "expected"), [
    (1024, 257, 14, 768, "vit-l"),
    (1024, 577, 14, 768, "vit-l-336"),
    (1152, 729, 14, None, "siglip-384"),
    (1152, 1024, 16, None, None),  # SigLIP-512: same width, another grid
    (1280, 257, 14, 1024, "vit-h"),
], ids=["vit-l-224", "vit-l-336", "siglip-384", "siglip-512", "vit-h"])
def test_clip_vision_files_are_named_by_widths_and_grid(hidden, positions, patch, projection, expected) -> None:
    assert clip_vision_encoder(_vision_shapes(hidden, positions, patch, projection)) == expected
