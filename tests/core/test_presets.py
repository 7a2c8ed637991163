"""Unified-loader presets: file matching and the 'not found' explanation."""

import pytest

from ipadapter_core import config
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.presets import find_file, near_misses, not_found, preset_entry


def test_every_preset_has_sd15_and_sdxl_rows():
    for name in config.preset_names():
        for family in ("sd15", "sdxl"):
            try:
                entry = preset_entry(name, family)
            except IPAdapterError as exc:
                assert "cannot be used with this checkpoint" in str(exc)
                continue
            assert entry.encoder in config.encoders()
            assert find_file([entry.file], entry.patterns) == entry.file, (name, family)


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
