"""Flux / SD3.5 presets (file names users have, encoders, v1 vs v2) and the doctor's report on those files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ipadapter_core import config, doctor
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.inventory import identify, read_shapes
from ipadapter_core.kinds import detect_kind
from ipadapter_core.loading import split_adapter_sections
from ipadapter_core.presets import FAMILIES, find_file, preset_entry
from tests.fixtures.dit_adapters import (
    SIGLIP_WIDTH,
    VIT_L_EMBEDS,
    instantx_flux_state_dict,
    instantx_sd3_state_dict,
    write_file,
    xlabs_state_dict,
)

# preset: (family, kind, encoder, tokens) -- the decisions in the DiT brief
DIT_PRESETS = {
    "FLUX XLABS v1 (ViT-L)": ("flux", "xlabs_flux", "vit-l", 4),
    "FLUX XLABS v2 (ViT-L)": ("flux", "xlabs_flux", "vit-l", 16),
    "FLUX INSTANTX (SigLIP)": ("flux", "instantx_flux", "siglip-384", None),
    "SD3.5-LARGE INSTANTX (SigLIP)": ("sd3", "instantx_sd3", "siglip-384", None),
}


@pytest.mark.parametrize("preset", list(DIT_PRESETS))
def test_dit_presets_resolve_for_their_family_only(preset: str) -> None:
    family, kind, encoder, tokens = DIT_PRESETS[preset]
    entry = preset_entry(preset, family)
    assert (entry.kind, entry.encoder, entry.tokens) == (kind, encoder, tokens)
    assert find_file([entry.file], entry.patterns) == entry.file
    assert entry.url.startswith("https://huggingface.co/") and entry.encoder in config.encoders()
    for other in FAMILIES:
        if other != family:
            with pytest.raises(IPAdapterError, match="cannot be used with this checkpoint: the .* works only with"):
                preset_entry(preset, other)


def test_every_preset_has_a_row_for_every_family() -> None:
    for name, rows in config.presets().items():
        assert set(rows) == set(FAMILIES), name
        for family in ("flux", "sd3"):
            if name not in DIT_PRESETS:
                with pytest.raises(IPAdapterError, match="SD1.5/SDXL \\(UNet\\) adapter; on"):
                    preset_entry(name, family)


NAMES = {
    "FLUX XLABS v1 (ViT-L)": ["flux-ip-adapter.safetensors", "xlabs_flux_ip_adapter.safetensors",
                              "XLabs-AI/flux-ip-adapter/ip_adapter.safetensors", "flux_ip_adapter_v1.safetensors"],
    "FLUX XLABS v2 (ViT-L)": ["flux-ip-adapter-v2.safetensors", "xlabs/flux-ip-adapter-v2/ip_adapter.safetensors",
                              "xlabs_ip_adapter_v2.safetensors"],
    "FLUX INSTANTX (SigLIP)": ["FLUX.1-dev-IP-Adapter.bin", "InstantX/FLUX.1-dev-IP-Adapter/ip-adapter.bin",
                               "instantx_flux_ip_adapter.safetensors"],
    "SD3.5-LARGE INSTANTX (SigLIP)": ["SD3.5-Large-IP-Adapter.bin", "sd35_large_ip_adapter.safetensors",
                                      "InstantX/SD3.5-Large-IP-Adapter/ip-adapter.bin"],
}


@pytest.mark.parametrize("preset", list(NAMES))
def test_names_users_have_match_their_preset_and_no_other(preset: str) -> None:
    entry = preset_entry(preset, DIT_PRESETS[preset][0])
    for name in NAMES[preset]:
        assert find_file([name], entry.patterns) == name, name
    others = [n for p, names in NAMES.items() if p != preset for n in names]
    others += ["ip_adapter.safetensors", "ip-adapter.bin", "ip-adapter_sdxl.safetensors"]  # too generic / SD
    assert find_file(others, entry.patterns) is None, find_file(others, entry.patterns)


def test_encoder_patterns_match_the_right_files() -> None:
    vit_l, siglip = config.encoders()["vit-l"]["pattern"], config.encoders()["siglip-384"]["pattern"]
    for name in ("clip-vit-large-patch14.safetensors", "clip_vision_l.safetensors",
                 "openai/clip-vit-large-patch14/model.safetensors"):
        assert find_file([name], [vit_l]) == name
    for name in ("clip_l.safetensors", "clip-vit-large-patch14-336.bin", "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"):
        assert find_file([name], [vit_l]) is None, name  # the Flux text encoder, Kolors' 336 px ViT-L, ViT-H
    for name in ("siglip-so400m-patch14-384.safetensors", "sigclip_vision_patch14_384.safetensors"):
        assert find_file([name], [siglip]) == name
    assert find_file(["siglip-so400m-patch16-512.safetensors", "clip_vision_l.safetensors"], [siglip]) is None


def _xlabs_kind(tokens: int):
    weights = split_adapter_sections(xlabs_state_dict(hidden=32, tokens=tokens, n_double=2, context=64,
                                                      clip_dim=16, device="meta"))
    return detect_kind(weights.image_proj, weights.ip_adapter)


def test_a_v2_file_under_the_v1_preset_is_reported() -> None:
    v1, v2 = preset_entry("FLUX XLABS v1 (ViT-L)", "flux"), preset_entry("FLUX XLABS v2 (ViT-L)", "flux")
    assert v1.content_problem(_xlabs_kind(4)) is None and v2.content_problem(_xlabs_kind(16)) is None
    problem = v1.content_problem(_xlabs_kind(16))
    assert "Flux XLabs v2 (16 tokens)" in problem and "4-token" in problem
    assert "16-token" in v2.content_problem(_xlabs_kind(4))
    sd3 = preset_entry("SD3.5-LARGE INSTANTX (SigLIP)", "sd3")
    assert "not the instantx_sd3 kind" in sd3.content_problem(_xlabs_kind(4))


# --- doctor -----------------------------------------------------------------------------------


def _vision_file(path: Path, hidden: int, positions: int, projection: int | None, head: bool = False) -> None:
    sd = {"vision_model.embeddings.position_embedding.weight": torch.zeros(positions, hidden, dtype=torch.float16),
          "vision_model.embeddings.patch_embedding.weight": torch.zeros(hidden, 3, 14, 14, dtype=torch.float16),
          "vision_model.post_layernorm.weight": torch.zeros(hidden, dtype=torch.float16)}
    if projection:
        sd["visual_projection.weight"] = torch.zeros(projection, hidden, dtype=torch.float16)
    if head:
        sd["vision_model.head.probe"] = torch.zeros(1, 1, hidden, dtype=torch.float16)
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def comfy_tree(tmp_path_factory) -> Path:
    """A ComfyUI models tree: a v2 XLabs file under the v1 name, InstantX Flux (.bin), SD3.5 (flat safetensors),
    a 224 px ViT-L and a SigLIP without its pooling head."""
    root = tmp_path_factory.mktemp("dit_doctor") / "ComfyUI"
    for key in doctor.FOLDER_KEYS:
        (root / "models" / key).mkdir(parents=True)
    ipa, cv = root / "models" / "ipadapter", root / "models" / "clip_vision"
    small = dict(dtype=torch.float16)
    write_file(xlabs_state_dict(hidden=32, tokens=16, n_double=2, context=64, clip_dim=VIT_L_EMBEDS, **small),
               ipa / "flux-ip-adapter.safetensors")
    write_file(instantx_flux_state_dict(hidden=32, tokens=2, n_blocks=3, context=64, siglip=SIGLIP_WIDTH, **small),
               ipa / "FLUX.1-dev-IP-Adapter.bin")
    write_file(instantx_sd3_state_dict(n_blocks=2, hidden=64, r_dim=64, queries=4, embed=SIGLIP_WIDTH, **small),
               ipa / "SD3.5-Large-IP-Adapter.safetensors")
    _vision_file(cv / "clip-vit-large-patch14.safetensors", 1024, 257, VIT_L_EMBEDS)
    _vision_file(cv / "sigclip_vision_patch14_384.safetensors", SIGLIP_WIDTH, 729, None)
    return root


def _lines(text: str) -> dict[str, str]:
    return {line.split(": ")[0].strip(): line for line in text.splitlines() if ": " in line}


def test_doctor_names_each_dit_adapter_and_its_encoder(comfy_tree: Path) -> None:
    lines = _lines(doctor.report(doctor.comfyui_folders(str(comfy_tree)), "0.0-test"))
    vit_l, siglip = config.encoders()["vit-l"], config.encoders()["siglip-384"]
    xlabs = lines["flux-ip-adapter.safetensors"]
    assert "IP-Adapter: Flux XLabs v2 (16 tokens) (Flux.1)" in xlabs
    assert f"needs {vit_l['label']} ({vit_l['file']})" in xlabs
    instantx = lines["FLUX.1-dev-IP-Adapter.bin"]
    assert "Flux InstantX (2 tokens)" in instantx and f"{siglip['label']} ({siglip['file']}" in instantx
    assert "vision_model.head" in instantx
    sd3 = lines["SD3.5-Large-IP-Adapter.safetensors"]
    assert "SD3.5 (hidden 64) InstantX (4 tokens) (SD3.5)" in sd3 and siglip["file"] in sd3
    for line in (xlabs, instantx, sd3):
        assert "BROKEN" not in line and "WRONG?" not in line and "SDXL" not in line and "FaceID" not in line
    assert lines["clip-vit-large-patch14.safetensors"].endswith(f"CLIP vision: {vit_l['label']}")
    assert "no attention-pooling head" in lines["sigclip_vision_patch14_384.safetensors"]


def test_doctor_preset_lines_check_content_tokens_and_the_pooling_head(comfy_tree: Path, tmp_path: Path) -> None:
    text = doctor.report(doctor.comfyui_folders(str(comfy_tree)))
    assert "wrong    FLUX XLABS v1 (ViT-L) [flux]: flux-ip-adapter.safetensors: it is a Flux XLabs v2" in text
    assert "missing  FLUX XLABS v2 (ViT-L) [flux]: flux-ip-adapter-v2.safetensors -> models/ipadapter" in text
    assert ("ready    SD3.5-LARGE INSTANTX (SigLIP) [sd3]: SD3.5-Large-IP-Adapter.safetensors + "
            "sigclip_vision_patch14_384.safetensors") in text
    assert ("missing  FLUX INSTANTX (SigLIP) [flux]: siglip-so400m-patch14-384.safetensors with "
            "vision_model.head.*") in text
    # The full Google file (with the head) makes the InstantX Flux preset ready.
    folders = doctor.comfyui_folders(str(comfy_tree))
    extra = tmp_path / "cv"
    extra.mkdir()
    _vision_file(extra / "siglip-so400m-patch14-384.safetensors", SIGLIP_WIDTH, 729, None, head=True)
    folders["clip_vision"].append(str(extra))
    text = doctor.report(folders)
    assert "ready    FLUX INSTANTX (SigLIP) [flux]: FLUX.1-dev-IP-Adapter.bin + siglip-so400m-patch14-384" in text
    assert "has the attention-pooling head" in _lines(text)["siglip-so400m-patch14-384.safetensors"]


def test_cli_doctor_reports_the_same(comfy_tree: Path) -> None:
    from ipadapter_cli.doctor import run_doctor

    text = run_doctor(comfy_tree)
    assert "flux-ip-adapter.safetensors: IP-Adapter: Flux XLabs v2 (16 tokens)" in text
    assert "SD3.5-Large-IP-Adapter.safetensors: IP-Adapter: SD3.5 (hidden 64) InstantX" in text


def test_identify_names_a_pickle_from_shapes_only(comfy_tree: Path) -> None:
    path = comfy_tree / "models" / "ipadapter" / "FLUX.1-dev-IP-Adapter.bin"
    assert all(t.device.type == "meta" for t in read_shapes(str(path)).values())
    report = identify(str(path))
    assert (report.role, report.kind, report.family, report.encoder, report.tokens) == (
        "adapter", "instantx_flux", "flux", "siglip-384", 2)
