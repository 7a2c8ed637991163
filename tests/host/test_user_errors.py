"""Every mistake a user can make with the foundation nodes gets its own message, naming the node,
the input or file, what was expected and what to do; never a raw shape error."""

from __future__ import annotations

import pytest

from tests.fixtures import comfy_models
from tests.fixtures.adapters import write_adapter
from tests.host import harness

ADV = dict(weight=1.0, weight_type="linear", combine_embeds="concat", start_at=0.0, end_at=1.0,
           embeds_scaling="V only")


_error_type = harness.error_type


def _load(path) -> object:
    """What IPAdapterModelLoader returns for this file (the file lives outside the model folders)."""
    pipeline = harness.pack_module("nodes.pipeline")
    return pipeline.Pipeline(adapter=pipeline.load_adapter(str(path)), adapter_file=str(path))


def _adapter_for(unet, name: str, tmp_path):
    return _load(write_adapter(name, tmp_path, sites=comfy_models.diffusers_widths(unet)))


_assert_actionable = harness.assert_actionable


def test_sd15_adapter_on_sdxl_model(pack, unet, clip_vision, reference_image, tmp_path):
    sd15 = _adapter_for(unet("sd15-reduced"), "ip-adapter_sd15.safetensors", tmp_path)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sdxl-reduced"), ipadapter=sd15, image=reference_image,
                         clip_vision=clip_vision, **ADV)
    _assert_actionable(err.value, "[IPAdapter Advanced", "SD1.5", "SDXL")


def test_sdxl_adapter_on_sd15_model(pack, unet, clip_vision, reference_image, tmp_path):
    sdxl = _adapter_for(unet("sdxl-reduced"), "ip-adapter_sdxl_vit-h.safetensors", tmp_path)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=sdxl, image=reference_image,
                         clip_vision=clip_vision, **ADV)
    _assert_actionable(err.value, "SDXL model", "checkpoint is SD1.5")


def test_sdxl_refiner_is_refused_with_its_own_reason(pack, unet, clip_vision, reference_image, tmp_path,
                                                     monkeypatch):
    # A 1280-wide context like the refiner's, on the small SD1.5 layout; the config is undone after the test
    # and the model is not put in the session cache.
    monkeypatch.setitem(comfy_models.UNET_CONFIGS, "sd15-refinerctx",
                        {**comfy_models.UNET_CONFIGS["sd15-reduced"], "context_dim": 1280})
    refiner_like = comfy_models.build_unet("sd15-refinerctx")
    sdxl = _adapter_for(unet("sdxl-reduced"), "ip-adapter_sdxl_vit-h.safetensors", tmp_path)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=refiner_like, ipadapter=sdxl, image=reference_image,
                         clip_vision=clip_vision, **ADV)
    _assert_actionable(err.value, "refiner", "base model")
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterUnifiedLoader", model=refiner_like, preset="STANDARD (medium strength)")
    _assert_actionable(err.value, "[IPAdapter Unified Loader", "refiner")


def test_wrong_clip_vision_names_both_encoders(pack, unet, reference_image, host_dirs, tmp_path):
    plus = _adapter_for(unet("sd15-reduced"), "ip-adapter-plus_sd15.safetensors", tmp_path)
    tiny = comfy_models.tiny_clip_vision(host_dirs["work"], seed=1)  # 64-wide hidden states, not ViT-H's 1280
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=plus, image=reference_image,
                         clip_vision=tiny, **ADV)
    _assert_actionable(err.value, "Wrong CLIP vision", "CLIP-ViT-H-14", "input 'clip_vision'")

    vit_g = _adapter_for(unet("sd15-reduced"), "ip-adapter_sd15_vit-G.safetensors", tmp_path)
    vit_h_sized = comfy_models.tiny_clip_vision(host_dirs["work"], seed=2, projection_dim=1024)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=vit_g, image=reference_image,
                         clip_vision=vit_h_sized, **ADV)
    _assert_actionable(err.value, "ViT-bigG", "1024")


def test_missing_clip_vision_says_which_file(pack, unet, reference_image, tmp_path):
    basic = _adapter_for(unet("sd15-reduced"), "ip-adapter_sd15.safetensors", tmp_path)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=basic, image=reference_image,
                         **ADV)
    _assert_actionable(err.value, "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "Load CLIP Vision")


def test_faceid_file_on_a_plain_node_points_to_the_faceid_node(pack, unet, clip_vision, reference_image, tmp_path):
    faceid = _adapter_for(unet("sd15-reduced"), "ip-adapter-faceid_sd15.bin", tmp_path)
    for node in ("IPAdapterAdvanced", "IPAdapter"):
        kwargs = dict(ADV) if node == "IPAdapterAdvanced" else dict(weight=1.0, start_at=0.0, end_at=1.0,
                                                                    weight_type="standard")
        if node == "IPAdapterAdvanced":
            kwargs["clip_vision"] = clip_vision
        with pytest.raises(_error_type()) as err:
            harness.run_node(node, model=unet("sd15-reduced"), ipadapter=faceid, image=reference_image, **kwargs)
        _assert_actionable(err.value, "FaceID", "IPAdapter FaceID")


def test_unified_loader_missing_file_lists_folders_and_download(pack, unet, tmp_path, monkeypatch):
    harness.swap_model_folders(monkeypatch, tmp_path)  # a folder of its own: the shared one is left as it was
    folder = tmp_path / "ipadapter"
    (folder / "ip-adapter-plus-face_sd15 .safetensors").write_bytes(b"")  # a stray space: a near miss
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterUnifiedLoader", model=unet("sd15-reduced"), preset="PLUS FACE (portraits)")
    _assert_actionable(err.value, "[IPAdapter Unified Loader", str(folder), "ip-adapter-plus-face_sd15",
                       "huggingface.co", "Near misses")


def test_corrupt_and_html_files_are_explained(pack, tmp_path, monkeypatch):
    harness.swap_model_folders(monkeypatch, tmp_path)
    (tmp_path / "ipadapter" / "downloaded_page.safetensors").write_bytes(
        b"<!DOCTYPE html><html>Not found</html>" * 10)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterModelLoader", ipadapter_file="downloaded_page.safetensors")
    _assert_actionable(err.value, "[IPAdapter Model Loader", "downloaded_page.safetensors", "download")


def test_empty_image_batch_and_bad_mask(pack, unet, clip_vision, reference_image, tmp_path):
    import torch

    basic = _adapter_for(unet("sd15-reduced"), "ip-adapter_sd15.safetensors", tmp_path)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=basic,
                         image=reference_image[:0], clip_vision=clip_vision, **ADV)
    _assert_actionable(err.value, "empty", "input 'image'")
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=unet("sd15-reduced"), ipadapter=basic, image=reference_image,
                         clip_vision=clip_vision, attn_mask=torch.ones(1, 1, 8, 8), **ADV)
    _assert_actionable(err.value, "mask", "input 'attn_mask'")
