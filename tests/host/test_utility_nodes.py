"""The embeds/image utility and schedule/params nodes, executed in-process the way ComfyUI calls them."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from tests.host import adapters, harness

MAKE_NOISE = dict(type="shuffle", strength=0.4, blur=3)
WEIGHTS = dict(weights="1.0, 0.0", timing="linear", frames=3, start_frame=0, end_frame=9999, add_starting_frames=0,
               add_ending_frames=0, method="full batch")


def _error_type():
    return harness.pack_module("ipadapter_core.errors").IPAdapterError




# --- embeds -----------------------------------------------------------------------------------------


def test_combine_embeds_methods_by_hand(pack):
    e1 = torch.tensor([[1.0, 4.0, -2.0]])
    e2 = torch.tensor([[3.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    before = (e1.clone(), e2.clone())
    run = lambda method, **more: harness.run_node("IPAdapterCombineEmbeds", embed1=e1, method=method, **more)[0]
    assert torch.equal(run("concat"), e1)  # a single embed passes through
    assert torch.equal(run("concat", embed2=e2), torch.cat([e1, e2]))
    assert torch.allclose(run("add", embed2=e2), torch.tensor([[9.0, 6.0, 0.0]]))
    assert torch.allclose(run("subtract", embed2=e2), torch.tensor([[1 - 4.0, 4 - 1.0, -2 - 1.0]]))
    assert torch.allclose(run("average", embed3=e2), torch.tensor([[3.0, 2.0, 0.0]]))
    assert torch.allclose(run("max", embed5=e2), torch.tensor([[5.0, 4.0, 2.0]]))
    assert torch.allclose(run("min", embed2=e2), torch.tensor([[1.0, 0.0, -2.0]]))
    # norm average: unit vectors averaged, mean length restored (our fix of the per-element norm, §8 bug 4)
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 10.0]])
    got = harness.run_node("IPAdapterCombineEmbeds", embed1=a, method="norm average", embed2=b)[0]
    assert torch.allclose(got, torch.tensor([[0.3, 0.9]]) * 7.5)
    assert torch.equal(e1, before[0]) and torch.equal(e2, before[1])


def test_combine_embeds_mismatch_names_the_input(pack):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterCombineEmbeds", embed1=torch.zeros(1, 1024), method="add",
                         embed3=torch.zeros(1, 257, 1280))
    text = str(err.value)
    assert "[IPAdapter Combine Embeds / input 'embed3']" in text and "What to do:" in text


def test_save_then_load_round_trip(pack, io_dirs, unet, ipadapter_dir, reference_image, clip_vision):
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", unet("sd15-reduced")))
    pos, _neg = harness.run_node("IPAdapterEncoder", ipadapter=ipadapter, image=reference_image, weight=1.0,
                                 clip_vision=clip_vision)
    out = harness.run_node("IPAdapterSaveEmbeds", embeds=pos, filename_prefix="emb/IP_embeds", ipadapter=ipadapter)
    harness.run_node("IPAdapterSaveEmbeds", embeds=pos * 2, filename_prefix="emb/IP_embeds")
    saved = sorted(p.name for p in (io_dirs["output"] / "emb").iterdir())
    assert saved == ["IP_embeds_00001_.safetensors", "IP_embeds_00002_.safetensors"]  # counter advances
    assert out["ui"]["embeds"][0] == {"filename": saved[0], "subfolder": "emb", "type": "output"}
    header = harness.pack_module("ipadapter_core.embeds_io").read_header(str(io_dirs["output"] / "emb" / saved[0]))
    meta = header["__metadata__"]
    assert meta["kind"] == ipadapter.adapter.kind.kind and json.loads(meta["shape"]) == list(pos.shape)

    (io_dirs["input"] / "mine").mkdir()
    shutil.copy(io_dirs["output"] / "emb" / saved[0], io_dirs["input"] / "mine" / saved[0])
    torch.save(pos * 3, io_dirs["input"] / "old.ipadpt")  # the incumbent's format
    (io_dirs["input"] / "photo.png").write_bytes(b"\x89PNG")
    cls = pack.NODE_CLASS_MAPPINGS["IPAdapterLoadEmbeds"]
    listed = cls.INPUT_TYPES()["required"]["embeds"][0]
    # the input folder's files, then what Save Embeds wrote to the output folder, annotated as ComfyUI does
    assert listed == ["mine/IP_embeds_00001_.safetensors", "old.ipadpt", "emb/IP_embeds_00001_.safetensors [output]",
                      "emb/IP_embeds_00002_.safetensors [output]"]
    assert torch.equal(harness.run_node("IPAdapterLoadEmbeds", embeds=listed[0])[0], pos)
    assert torch.equal(harness.run_node("IPAdapterLoadEmbeds", embeds="old.ipadpt")[0], pos * 3)
    assert torch.equal(harness.run_node("IPAdapterLoadEmbeds", embeds=listed[3])[0], pos * 2)  # saved, not copied
    assert cls.IS_CHANGED(embeds="old.ipadpt") != ""


def test_save_checks_the_adapter_and_the_prefix(pack, io_dirs, unet, ipadapter_dir):
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", unet("sd15-reduced")))
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterSaveEmbeds", embeds=torch.zeros(1, 64), filename_prefix="x", ipadapter=ipadapter)
    assert "[IPAdapter Save Embeds / input 'ipadapter']" in str(err.value)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterSaveEmbeds", embeds=torch.zeros(1, 64), filename_prefix="../../escape")
    assert "input 'filename_prefix'" in str(err.value)
    assert not list(io_dirs["output"].iterdir())


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_ipadpt_is_refused_without_running(pack, io_dirs, tmp_path):
    marker = tmp_path / "ran"
    torch.save(_Payload(str(marker)), io_dirs["input"] / "evil.ipadpt")
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterLoadEmbeds", embeds="evil.ipadpt")
    assert not marker.exists()
    text = str(err.value)
    assert "[IPAdapter Load Embeds / input 'embeds']" in text and "refused" in text and "What to do:" in text


# --- images -----------------------------------------------------------------------------------------


def test_noise_node_is_repeatable_and_keeps_the_global_rng(pack, reference_image):
    state = torch.random.get_rng_state()
    py_state = random.getstate()
    first = harness.run_node("IPAdapterNoise", image_optional=reference_image, **MAKE_NOISE)[0]
    second = harness.run_node("IPAdapterNoise", image_optional=reference_image, **MAKE_NOISE)[0]
    assert torch.equal(torch.random.get_rng_state(), state) and random.getstate() == py_state
    assert torch.equal(first, second) and first.shape == (1, 224, 224, 3)
    black = harness.run_node("IPAdapterNoise", type="fade", strength=0.0, blur=0)[0]
    assert black.shape == (1, 224, 224, 3) and black.abs().sum() == 0


def test_noise_node_refuses_a_non_image(pack):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterNoise", image_optional=torch.zeros(1, 8, 8), **MAKE_NOISE)
    assert "input 'image_optional'" in str(err.value)


def _clip_vision_of_size(host_dirs, size: int):
    import comfy.clip_vision

    from tests.fixtures.comfy_models import TINY_CLIP_VISION

    path = host_dirs["work"] / f"clip_vision_{size}.json"
    path.write_text(json.dumps({**TINY_CLIP_VISION, "image_size": size}))
    return comfy.clip_vision.ClipVisionModel(str(path))


def test_prep_image_sizes_and_exact_square_pad(pack, clip_vision, host_dirs):
    wide = torch.ones(2, 51, 100, 3)  # odd difference: the incumbent's pad left it 99x100
    prep = dict(interpolation="NEAREST", crop_position="pad", sharpening=0.0)
    out = harness.run_node("PrepImageForClipVision", image=wide, **prep)[0]
    assert out.shape == (2, 224, 224, 3)
    rows_white = (out[0, :, 112, 0] > 0.5).float().sum().item()
    assert rows_white == pytest.approx(224 * 51 / 100, abs=2)  # the image band keeps its aspect ratio
    assert harness.run_node("PrepImageForClipVision", image=wide, clip_vision=clip_vision, **prep)[0].shape[1] == 224
    big = _clip_vision_of_size(host_dirs, 336)
    out = harness.run_node("PrepImageForClipVision", image=wide, interpolation="LANCZOS", crop_position="top",
                           sharpening=0.3, clip_vision=big)[0]
    assert out.shape == (2, 336, 336, 3)
    assert torch.equal(wide, torch.ones(2, 51, 100, 3))


# --- schedules and params ---------------------------------------------------------------------------


def _frames(images: torch.Tensor) -> list[int]:
    return [int(round(v)) for v in images[:, 0, 0, 0].tolist()]


def test_weights_nodes(pack):
    image = torch.arange(2, dtype=torch.float32).view(2, 1, 1, 1).expand(2, 4, 4, 3).clone()
    out = harness.run_node("IPAdapterWeights", image=image, **WEIGHTS)
    weights, inverted, total, image_1, image_2, strategy = out
    assert weights == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.5, 0.0]) and total == 6
    assert inverted == pytest.approx([0.0, 0.5, 1.0, 0.0, 0.5, 1.0])
    assert _frames(image_1) == [0, 0, 0, 1, 1, 1] and image_2 is None
    assert strategy["frame_count"] == 2 and strategy["timing"] == "linear"
    again = harness.run_node("IPAdapterWeightsFromStrategy", weights_strategy=strategy, image=image)
    assert again[:3] == out[:3] and torch.equal(again[3], image_1)
    assert harness.run_node("IPAdapterPromptScheduleFromWeightsStrategy", weights_strategy=strategy,
                            prompt="a\nb")[0] == '"0": "a",\n"3": "b",\n'
    one = dict(WEIGHTS, start_frame=1, end_frame=2)  # a one-frame transition: the incumbent divided by zero
    assert harness.run_node("IPAdapterWeights", **one)[0] == [1.0, 0.0, 0.0]
    assert harness.run_node("IPAdapterCombineWeights", weights_1=weights, weights_2=0.25) == (weights + [0.25], 7)


def test_weights_feed_a_batch_apply(pack, unet, ipadapter_dir, clip_vision, reference_image):
    """The FLOAT list output is accepted as a per-frame weight by the batch apply node."""
    model = unet("sd15-reduced")
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", model))
    weights = harness.run_node("IPAdapterWeights", **dict(WEIGHTS, frames=2))[0]
    patched = harness.run_node("IPAdapterBatch", model=model, ipadapter=ipadapter, image=reference_image,
                               weight=weights, weight_type="linear", start_at=0.0, end_at=1.0,
                               embeds_scaling="V only", encode_batch_size=0, clip_vision=clip_vision)[0]
    key = ("latent", "sd15-reduced", "batch2")
    if key not in harness.CACHE:
        harness.CACHE[key] = harness.sample(model, batch=2)
    latent, base = harness.sample(patched, batch=2), harness.CACHE[key]
    assert not torch.equal(latent[0], base[0])  # weight 1.0 on frame 0 ...
    assert torch.equal(latent[1], base[1])  # ... and 0.0 on frame 1


def test_weights_node_errors_name_the_node(pack):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterWeights", **dict(WEIGHTS, weights="1, x"))
    assert "[IPAdapter Weights / input 'weights']" in str(err.value)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterWeights", image=torch.zeros(1, 4, 4, 3), **dict(WEIGHTS, method="shift batches"))
    assert "input 'image'" in str(err.value)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterPromptScheduleFromWeightsStrategy", weights_strategy=None, prompt="a")
    assert "input 'weights_strategy'" in str(err.value)


def test_regional_conditioning_and_from_params(pack, unet, ipadapter_dir, clip_vision, reference_image):
    model = unet("sd15-reduced")
    positive = harness.conditioning(768, 1, False)
    negative = harness.conditioning(768, 2, False)
    left = torch.zeros(1, 64, 64)
    left[:, :, :32] = 1.0
    region = dict(image=reference_image, image_weight=0.8, prompt_weight=1.5, weight_type="style transfer",
                  start_at=0.0, end_at=0.9)
    params_a, pos_a, neg_a = harness.run_node("IPAdapterRegionalConditioning", mask=left, positive=positive,
                                              negative=negative, **region)
    assert params_a == {"image": [reference_image], "attn_mask": [left], "weight": [0.8],
                        "weight_type": ["style transfer"], "start_at": [0.0], "end_at": [0.9]}
    for cond in (pos_a, neg_a):
        extras = cond[0][1]
        assert torch.equal(extras["mask"], left) and extras["set_area_to_bounds"] is False
        assert extras["mask_strength"] == 1.5
    assert "mask" not in positive[0][1] and "mask" not in negative[0][1]  # the inputs are copies, not changed

    flipped = torch.flip(reference_image, dims=[2])
    params_b, pos_b, neg_b = harness.run_node("IPAdapterRegionalConditioning", **dict(region, image=flipped))
    assert params_b["attn_mask"] == [None] and pos_b is None and neg_b is None
    combined = harness.run_node("IPAdapterCombineParams", params_1=params_a, params_2=params_b)[0]
    assert combined["weight"] == [0.8, 0.8] and combined["attn_mask"][0] is left and len(params_a["image"]) == 1

    # 'IPAdapter from Params' takes the combined format: one application per region, masked where given
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", model))
    patched = harness.run_node("IPAdapterFromParams", model=model, ipadapter=ipadapter, ipadapter_params=combined,
                               combine_embeds="concat", embeds_scaling="V only", clip_vision=clip_vision)[0]
    patches = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
    applications = {len(p.applications) for p in patches.values()}
    assert applications == {2}
    first, second = next(iter(patches.values())).applications
    assert first.mask is not None and second.mask is None
    assert not torch.equal(harness.sample(patched), _base_latent(model))


def _base_latent(model) -> torch.Tensor:
    key = ("latent", "sd15-reduced")  # the unpatched latent, shared with test_apply
    if key not in harness.CACHE:
        harness.CACHE[key] = harness.sample(model)
    return harness.CACHE[key]


def test_combine_params_refuses_other_values(pack):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterCombineParams", params_1={"image": []}, params_2={"image": []})
    assert "[IPAdapter Combine Params / input 'params_1']" in str(err.value)
