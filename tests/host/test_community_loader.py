"""IPAdapter Unified Loader Community: the Composition and Kolors presets, found by name, checked by content.

Model folders are swapped for temporary ones for each test (so other tests' files never match), and the
CLIP vision file found by name is served by the tiny encoder (real encoders are gigabytes).
"""

from __future__ import annotations

import pytest

from tests.host import harness
from tests.host import variant_fixtures as vf


@pytest.fixture
def folders(pack, tmp_path, monkeypatch, clip_vision):
    harness.swap_model_folders(monkeypatch, tmp_path)
    loaded: list[str] = []
    monkeypatch.setattr(harness.pack_module("nodes.host"), "load_clip_vision",
                        lambda path: loaded.append(path) or clip_vision)
    return dict(root=tmp_path, loaded=loaded)


def _base(model, unet_name: str):
    key = ("latent", unet_name)  # the unpatched latent, shared with the other host tests
    if key not in harness.CACHE:
        harness.CACHE[key] = harness.sample(model)
    return harness.CACHE[key]


def _community(model, preset: str):
    return harness.run_node("IPAdapterUnifiedLoaderCommunity", model=model, preset=preset)


def test_presets_are_split_between_the_two_loaders(pack):
    community = pack.NODE_CLASS_MAPPINGS["IPAdapterUnifiedLoaderCommunity"].INPUT_TYPES()
    unified = pack.NODE_CLASS_MAPPINGS["IPAdapterUnifiedLoader"].INPUT_TYPES()
    assert community["required"]["preset"][0] == ["Composition", "Kolors"]
    assert list(community["required"]) == ["model", "preset"] and list(community["optional"]) == ["ipadapter"]
    assert not {"Composition", "Kolors"} & set(unified["required"]["preset"][0])
    assert pack.NODE_CLASS_MAPPINGS["IPAdapterUnifiedLoaderCommunity"].CATEGORY == "ipadapter/loaders"


@pytest.mark.parametrize("unet_name", ["sd15-reduced", "sdxl-reduced"])
def test_composition_preset_loads_the_ostris_adapter_and_it_acts(folders, unet, unet_name):
    model = unet(unet_name)
    family = unet_name.split("-")[0]
    vf.write_plus(folders["root"] / "ipadapter", f"ip_plus_composition_{family}.safetensors", model)
    (folders["root"] / "ipadapter" / "ip-adapter-plus_sd15.safetensors").write_bytes(b"")  # must not be picked
    (folders["root"] / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors").write_bytes(b"stand-in")
    out_model, pipeline = _community(model, "Composition")
    assert out_model is model
    assert pipeline.adapter.kind.kind == "plus" and pipeline.adapter_file.endswith(f"composition_{family}.safetensors")
    assert folders["loaded"] == [str(folders["root"] / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")]
    patched = vf.advanced(dict(model=model, composition=pipeline, clip_vision=pipeline.clip_vision),
                          vf.images()["B"], weight_type="composition", adapter="composition")
    assert vf.changed(harness.sample(patched), _base(model, unet_name))


def test_kolors_preset_loads_kolors_plus_with_the_336_encoder(folders, unet):
    model = unet("sdxl-reduced")  # Kolors UNets are SDXL-shaped with a 2048-wide context
    vf.write_plus(folders["root"] / "ipadapter", "Kolors-IP-Adapter-Plus.bin", model, kolors=True)
    (folders["root"] / "clip_vision" / "clip-vit-large-patch14-336.bin").write_bytes(b"stand-in")
    _, pipeline = _community(model, "Kolors")
    assert pipeline.adapter.kind.kind == "kolors_plus" and pipeline.adapter.kind.family == "kolors"
    assert folders["loaded"][-1].endswith("clip-vit-large-patch14-336.bin")
    patched = vf.advanced(dict(model=model, kolors=pipeline, clip_vision=pipeline.clip_vision),
                          vf.images()["B"], adapter="kolors")
    assert vf.changed(harness.sample(patched), _base(model, "sdxl-reduced"))


def test_kolors_preset_refuses_sd15_and_a_missing_file_names_the_download(folders, unet):
    error = harness.pack_module("ipadapter_core.errors").IPAdapterError
    with pytest.raises(error, match="cannot be used with this checkpoint") as err:
        _community(unet("sd15-reduced"), "Kolors")
    assert "[IPAdapter Unified Loader Community" in str(err.value)
    with pytest.raises(error, match="Kolors-IP-Adapter-Plus") as err:
        _community(unet("sdxl-reduced"), "Kolors")
    assert "ip_adapter_plus_general.bin" in str(err.value) and str(folders["root"] / "ipadapter") in str(err.value)
