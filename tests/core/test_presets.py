"""Unified-loader presets: file matching and the 'not found' explanation."""

import pytest

from ipadapter_core import config
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.presets import FAMILIES, find_file, near_misses, not_found, preset_entry

# Which (preset, family) rows refuse, written out by hand from the README's tables: every other row of
# FAMILIES must give a file. A row deleted from models_config.yaml (refused as "it has no file") fails here.
UNSUPPORTED = {
    "LIGHT - SD1.5 only (low strength)": {"sdxl", "flux", "sd3"},
    "STANDARD (medium strength)": {"flux", "sd3"},
    "VIT-G (medium strength)": {"flux", "sd3"},
    "PLUS (high strength)": {"flux", "sd3"},
    "PLUS FACE (portraits)": {"flux", "sd3"},
    "FULL FACE - SD1.5 only (portraits stronger)": {"sdxl", "flux", "sd3"},
    "FLUX XLABS v1 (ViT-L)": {"sd15", "sdxl", "sd3"},
    "FLUX XLABS v2 (ViT-L)": {"sd15", "sdxl", "sd3"},
    "FLUX INSTANTX (SigLIP)": {"sd15", "sdxl", "sd3"},
    "SD3.5-LARGE INSTANTX (SigLIP)": {"sd15", "sdxl", "flux"},
    "Composition": {"flux", "sd3"},
    "Kolors": {"sd15", "flux", "sd3"},
}


def test_the_preset_list_is_the_known_one():
    assert config.preset_names() == list(UNSUPPORTED)


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_refusals_are_exactly_the_unsupported_rows(name: str):
    """Each family of each preset either gives a file that its own patterns find, or is refused with the
    reason its ``unsupported:`` row gives; and the refused families are exactly the expected ones."""
    rows = config.presets()[name]
    refused = set()
    for family in FAMILIES:
        row = rows.get(family)
        assert row is not None, f"{name!r} has no {family} row (neither a file nor an 'unsupported' reason)"
        try:
            entry = preset_entry(name, family)
        except IPAdapterError as exc:
            assert "unsupported" in row, f"{name!r} refused {family}, which has a file row: {exc}"
            assert row["unsupported"] in str(exc) and exc.input == "preset"
            refused.add(family)
            continue
        assert "unsupported" not in row
        assert entry.family == family and entry.file == row["file"]
        assert entry.encoder in config.encoders()
        assert find_file([entry.file], entry.patterns) == entry.file, (name, family)
    assert refused == UNSUPPORTED[name]


def test_kolors_checkpoints_use_the_sdxl_rows():
    assert preset_entry("Kolors", "kolors") == preset_entry("Kolors", "sdxl")
    with pytest.raises(IPAdapterError, match="only for SD1.5"):
        preset_entry("LIGHT - SD1.5 only (low strength)", "kolors")


def test_standard_sd15_does_not_pick_the_plus_or_light_file():
    names = ["ip-adapter-plus_sd15.safetensors", "ip-adapter_sd15_light_v11.bin", "sub/ip-adapter_sd15.safetensors"]
    entry = preset_entry("STANDARD (medium strength)", "sd15")
    assert find_file(names, entry.patterns) == "sub/ip-adapter_sd15.safetensors"


def test_light_prefers_v11_and_falls_back():
    entry = preset_entry("LIGHT - SD1.5 only (low strength)", "sd15")
    assert find_file(["ip-adapter_sd15_light.bin", "ip-adapter_sd15_light_v11.bin"], entry.patterns).endswith("v11.bin")
    assert find_file(["ip-adapter_sd15_light.bin"], entry.patterns) == "ip-adapter_sd15_light.bin"


def test_sd15_only_presets_refuse_sdxl_with_a_reason():
    with pytest.raises(IPAdapterError, match="only for SD1.5"):
        preset_entry("FULL FACE - SD1.5 only (portraits stronger)", "sdxl")


def test_vit_h_pattern_matches_the_readme_name_not_bigg():
    pattern = config.encoders()["vit-h"]["pattern"]
    assert find_file(["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"], [pattern])
    assert find_file(["CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors"], [pattern]) is None


def test_not_found_lists_folders_near_misses_and_download():
    names = ["ip-adapter_sd15 .safetensors", "unrelated.bin"]
    err = not_found(
        "IP-Adapter",
        "ipadapter",
        ["/a/models/ipadapter", "/b/extra"],
        names,
        ("ip.adapter.sd15\\.(safetensors|bin)$",),
        "ip-adapter_sd15.safetensors",
        "https://example/x",
    )
    text = str(err)
    assert "/a/models/ipadapter" in text and "/b/extra" in text
    assert "ip-adapter_sd15 .safetensors" in text  # the near miss with a stray space
    assert "https://example/x" in text and "Expected" in text and "What to do" in text


def test_near_misses_ignore_unrelated_names():
    assert near_misses(["totally_else.ckpt"], "ip-adapter_sd15.safetensors") == []
