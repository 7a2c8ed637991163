"""IPAdapter Unified Loader with the Flux and SD3.5 presets: files found by name and checked by content, the
encoder each needs (InstantX Flux: a SigLIP file holding the pooling head), and the family reasons.

Model folders are swapped for temporary ones per test; the CLIP vision file found by name is served by the tiny
encoder of the same family (real encoders are gigabytes), while the SigLIP file on disk is real (the pooling head
is read from it).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.fixtures import dit_adapters, dit_encoders
from tests.host import dit_cases as dc
from tests.host import harness

V1, V2 = "FLUX XLABS v1 (ViT-L)", "FLUX XLABS v2 (ViT-L)"
INSTANTX, SD3 = "FLUX INSTANTX (SigLIP)", "SD3.5-LARGE INSTANTX (SigLIP)"


@pytest.fixture
def folders(pack, tmp_path, monkeypatch, host_dirs):
    harness.swap_model_folders(monkeypatch, tmp_path)
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    loaded: list[str] = []
    monkeypatch.setattr(harness.pack_module("nodes.host"), "load_clip_vision",
                        lambda path: loaded.append(path) or encs["siglip" if "sig" in path else "vit-l"])
    return dict(root=tmp_path, loaded=loaded, encs=encs)


def _put(folders, fixture: str, name: str, container: str = "safetensors") -> None:
    shutil.copy(dit_adapters.cached_dit_adapter(fixture, container=container), folders["root"] / "ipadapter" / name)


def _siglip_file(folders, name: str, head: bool = True) -> None:
    dit_encoders.write_tiny_siglip_file(folders["root"] / "clip_vision" / name, folders["encs"]["siglip"], head=head)


def _unified(model, preset: str):
    return harness.run_node("IPAdapterUnifiedLoader", model=model, preset=preset)


def _acts(family: str, model, pipeline) -> None:
    patched = dc.apply(model, pipeline, dc.reference_image(), None)
    assert not torch.equal(dc.sample(patched, family), dc.sample(model, family))


def test_the_transformer_presets_are_offered(pack):
    presets = pack.NODE_CLASS_MAPPINGS["IPAdapterUnifiedLoader"].INPUT_TYPES()["required"]["preset"][0]
    assert {V1, V2, INSTANTX, SD3} <= set(presets)


def test_xlabs_presets_find_their_release_and_vit_l(folders):
    _put(folders, "xlabs-v1", "flux-ip-adapter.safetensors")
    _put(folders, "xlabs-v2", "flux-ip-adapter-v2.safetensors")
    (folders["root"] / "clip_vision" / "clip-vit-large-patch14.safetensors").write_bytes(b"served by the tiny one")
    model = dc.model("flux")
    out_model, pipeline = _unified(model, V1)
    assert out_model is model and pipeline.adapter.kind.tokens == 4
    assert folders["loaded"][-1].endswith("clip-vit-large-patch14.safetensors")
    _acts("flux", model, pipeline)
    assert _unified(model, V2)[1].adapter.kind.tokens == 16


def test_a_v2_file_under_the_v1_name_is_reported(folders):
    _put(folders, "xlabs-v2", "flux-ip-adapter.safetensors")
    (folders["root"] / "clip_vision" / "clip-vit-large-patch14.safetensors").write_bytes(b"x")
    with pytest.raises(harness.pack_module("ipadapter_core.errors").IPAdapterError) as err:
        _unified(dc.model("flux"), V1)
    assert "4-token release" in str(err.value) and err.value.input == "preset"


def test_instantx_flux_prefers_the_siglip_file_with_the_pooling_head(folders):
    _put(folders, "instantx-flux", "FLUX.1-dev-IP-Adapter.bin", container="bin")
    _siglip_file(folders, "sigclip_vision_patch14_384.safetensors", head=False)  # sorts first, has no head
    _siglip_file(folders, "siglip-so400m-patch14-384.safetensors")
    model = dc.model("flux")
    pipeline = _unified(model, INSTANTX)[1]
    assert pipeline.clip_vision_file.endswith("siglip-so400m-patch14-384.safetensors")
    _acts("flux", model, pipeline)


def test_instantx_flux_without_any_head_says_which_file_to_get(folders, monkeypatch, host_dirs):
    _put(folders, "instantx-flux", "FLUX.1-dev-IP-Adapter.bin", container="bin")
    _siglip_file(folders, "sigclip_vision_patch14_384.safetensors", head=False)
    fresh = dit_encoders.tiny_siglip_vision(host_dirs["work"])  # a new encoder object: no head found for it yet
    monkeypatch.setattr(harness.pack_module("nodes.host"), "load_clip_vision", lambda path: fresh)
    model = dc.model("flux")
    pipeline = _unified(model, INSTANTX)[1]
    with pytest.raises(harness.pack_module("ipadapter_core.errors").IPAdapterError) as err:
        dc.apply(model, pipeline, dc.reference_image(), None)
    assert "vision_model.head" in str(err.value) and "google/siglip-so400m-patch14-384" in str(err.value)


def test_sd35_preset_finds_its_adapter_and_siglip(folders):
    _put(folders, "instantx-sd3", "SD3.5-Large-IP-Adapter.bin", container="bin")
    _siglip_file(folders, "sigclip_vision_patch14_384.safetensors", head=False)  # SD3.5 needs no head
    model = dc.model("sd3")
    pipeline = _unified(model, SD3)[1]
    assert pipeline.adapter.kind.kind == "instantx_sd3"
    _acts("sd3", model, pipeline)


@pytest.mark.parametrize("preset,family,words", [
    ("STANDARD (medium strength)", "flux", ("FLUX XLABS",)),
    ("PLUS (high strength)", "sd3", ("SD3.5-LARGE INSTANTX",)),
    (SD3, "flux", ("SD3.5",)),
])
def test_a_preset_for_another_family_gives_its_reason(folders, preset, family, words):
    with pytest.raises(harness.pack_module("ipadapter_core.errors").IPAdapterError) as err:
        _unified(dc.model(family), preset)
    for word in words:
        assert word in str(err.value)


def test_a_flux_preset_on_an_sd15_model_gives_its_reason(folders, unet):
    with pytest.raises(harness.pack_module("ipadapter_core.errors").IPAdapterError) as err:
        _unified(unet("sd15-reduced"), V1)
    assert "Flux" in str(err.value)


def test_the_simple_node_takes_standard_and_refuses_the_unet_types(folders):
    _put(folders, "instantx-sd3", "SD3.5-Large-IP-Adapter.bin", container="bin")
    _siglip_file(folders, "siglip-so400m-patch14-384.safetensors")
    model = dc.model("sd3")
    pipeline = _unified(model, SD3)[1]
    simple = dict(model=model, ipadapter=pipeline, image=dc.reference_image(), weight=0.8, start_at=0.0, end_at=1.0)
    patched = harness.run_node("IPAdapter", weight_type="standard", **simple)[0]
    assert not torch.equal(dc.sample(patched, "sd3"), dc.sample(model, "sd3"))
    with pytest.raises(harness.error_type()) as err:
        harness.run_node("IPAdapter", weight_type="style transfer", **simple)
    harness.assert_actionable(err.value, "linear", "[IPAdapter /")
