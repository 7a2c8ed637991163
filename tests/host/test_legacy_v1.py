"""v1-era workflows (ComfyUI_IPAdapter_plus before 2024-03) load and run, with v1 semantics.

Two parts:
* in-process (fast): each v1 node against the modern node it maps onto (incumbent-v1.md §3), the
  ``noise`` negative, the v1 embeds pair, masked tiles, and the FaceID trio on a synthetic
  InsightFace pack;
* the real server (shared demo server): v1-era UI workflows written from the spec, converted and run.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.host import adapters, harness
from tests.host import v1_workflows as v1
from tests.host.server_fixtures import demo_server, prepared, run_images  # noqa: F401  (fixture)

UNET = "sd15-reduced"
SCALING = {"original": "V only", "linear": "K+V", "channel penalty": "K+mean(V) w/ C penalty"}


@pytest.fixture(scope="module")
def case(unet, ipadapter_dir, clip_vision, reference_image):
    model = unet(UNET)
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, UNET, model, seed=0))
    key = ("latent", UNET)
    if key not in harness.CACHE:
        harness.CACHE[key] = harness.sample(model)
    return dict(model=model, ipadapter=ipadapter, clip_vision=clip_vision, image=reference_image,
                base=harness.CACHE[key])


def _v1_apply(case, **kw):
    inputs = dict(ipadapter=case["ipadapter"], clip_vision=case["clip_vision"], image=case["image"],
                  model=case["model"], weight=0.8, noise=0.0, weight_type="original", start_at=0.0, end_at=1.0,
                  unfold_batch=False)
    inputs.update(kw)
    return harness.run_node("IPAdapterApply", **inputs)[0]


@pytest.mark.parametrize("weight_type", list(SCALING))
def test_apply_is_advanced_with_the_mapped_embeds_scaling(case, weight_type):
    old = harness.sample(_v1_apply(case, weight_type=weight_type))
    new = harness.sample(adapters.apply(case["model"], case["ipadapter"], case["image"], case["clip_vision"],
                                        weight=0.8, weight_type="linear", embeds_scaling=SCALING[weight_type]))
    assert torch.equal(old, new)
    assert not torch.equal(old, case["base"])


def test_noise_negative_is_the_v1_scrambled_reference(case):
    noise_mod = harness.pack_module("ipadapter_core.legacy_noise")
    rng_before = torch.random.get_rng_state()
    with_noise = harness.sample(_v1_apply(case, noise=0.3))
    assert torch.equal(torch.random.get_rng_state(), rng_before), "the global torch RNG was used"
    negative = noise_mod.v1_noise_image(case["image"], 0.3)
    expected = harness.sample(adapters.apply(case["model"], case["ipadapter"], case["image"], case["clip_vision"],
                                             weight=0.8, image_negative=negative))
    assert torch.equal(with_noise, expected), "noise > 0 must use the v1 noised reference as the negative"
    assert not torch.equal(with_noise, harness.sample(_v1_apply(case, noise=0.0)))
    assert torch.equal(with_noise, harness.sample(_v1_apply(case, noise=0.3))), "noise is not deterministic"


def test_apply_widget_order_and_defaults_are_v1s(pack):
    """Saved lists are positional and short ones are padded with defaults: both must be v1's (§1.2)."""
    cls = harness.pack_module("nodes.legacy_v1").IPAdapterApply
    required = cls.INPUT_TYPES()["required"]
    widgets = [k for k, spec in required.items() if isinstance(spec[0], list) or spec[0] in ("FLOAT", "BOOLEAN")]
    assert widgets == ["weight", "noise", "weight_type", "start_at", "end_at", "unfold_batch"]
    assert [required[w][1].get("default", required[w][0][0] if isinstance(required[w][0], list) else None)
            for w in widgets] == [1.0, 0.0, "original", 0.0, 1.0, False]


def test_encoder_pair_applied_equals_apply(case):
    for noise in (0.0, 0.5):
        pair = harness.run_node("IPAdapterEncoderV1", clip_vision=case["clip_vision"], image_1=case["image"],
                                ipadapter_plus=False, noise=noise, weight_1=1.0)[0]
        assert pair.shape[0] == 2 and pair.shape[1] == 1
        model = harness.run_node("IPAdapterApplyEncoded", ipadapter=case["ipadapter"], embeds=pair,
                                 model=case["model"], weight=0.8, weight_type="original", start_at=0.0, end_at=1.0,
                                 unfold_batch=False)[0]
        assert torch.equal(harness.sample(model), harness.sample(_v1_apply(case, noise=noise)))


def test_encoder_weights_are_squared_and_batch_embeds_joins_images(case):
    enc = dict(clip_vision=case["clip_vision"], image_1=case["image"], ipadapter_plus=False, noise=0.0)
    full = harness.run_node("IPAdapterEncoderV1", weight_1=1.0, **enc)[0]
    half = harness.run_node("IPAdapterEncoderV1", weight_1=0.5, **enc)[0]
    assert torch.allclose(half[0], full[0] * 0.25) and torch.equal(half[1], full[1])
    joined = harness.run_node("IPAdapterBatchEmbeds", embed1=full, embed2=half)[0]
    assert joined.shape == (2, 2, *full.shape[2:])
    assert torch.equal(joined[:, 0], full[:, 0]) and torch.equal(joined[:, 1], half[:, 0])
    with pytest.raises(harness.error_type(), match="embed2"):
        harness.run_node("IPAdapterBatchEmbeds", embed1=full, embed2=full[0])


def test_tiles_geometry_follows_the_v1_examples(pack):
    tiles = harness.pack_module("nodes.legacy_v1").v1_tiles
    square = torch.rand(1, 300, 300, 3, generator=torch.Generator().manual_seed(1))
    t, m = tiles(square, 1, 0.6)
    assert t.shape == (1, 224, 224, 3) and torch.equal(m, torch.ones(1, 224, 224))
    wide = torch.rand(1, 200, 400, 3, generator=torch.Generator().manual_seed(2))
    t, m = tiles(wide, 1, 0.6)
    assert t.shape[0] == 2 and m.shape == (2, 224, 448) and set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m.sum(0), torch.ones(224, 448))
    t, m = tiles(square, 2, 0.6)
    assert t.shape[0] == 5 and m.shape == (5, 448, 448)
    assert m[0].max() > 0.99 and all(abs(float(x.max()) - 0.6) < 1e-6 for x in m[1:])


def test_tiles_zero_is_a_plain_apply(case):
    model = harness.run_node("IPAdapterTilesMasked", ipadapter=case["ipadapter"], clip_vision=case["clip_vision"],
                             image=case["image"], model=case["model"], weight=0.8, noise=0.0, weight_type="original",
                             start_at=0.0, end_at=1.0, short_side_tiles=0, tile_weight=0.6)[0]
    assert torch.equal(harness.sample(model), harness.sample(_v1_apply(case)))


def test_apply_encoded_refuses_modern_embeds(case):
    with pytest.raises(harness.error_type(), match="v1 pair") as info:
        harness.run_node("IPAdapterApplyEncoded", ipadapter=case["ipadapter"], embeds=torch.zeros(1, 1024),
                         model=case["model"], weight=1.0)
    assert "input 'embeds'" in str(info.value) and "What to do:" in str(info.value)


def test_prompt_handler_routes_v1_encoder_inputs(pack):
    rewrite = harness.pack_module("nodes.legacy_embeds").rewrite_prompt
    body = {"prompt": {"1": {"class_type": "IPAdapterEncoder", "inputs": {"clip_vision": ["4", 0], "image": ["3", 0],
                                                                          "plus": True, "noise": 0.1}},
                       "2": {"class_type": "IPAdapterEncoder", "inputs": {"ipadapter": ["2", 1], "image": ["3", 0],
                                                                          "weight": 1.0}}}}
    original = copy.deepcopy(body)
    out = rewrite(body)
    assert body == original, "the posted prompt was modified"
    assert out["prompt"]["1"]["class_type"] == "IPAdapterEncoderV1"
    assert out["prompt"]["1"]["inputs"]["image_1"] == ["3", 0] and out["prompt"]["1"]["inputs"]["ipadapter_plus"]
    assert out["prompt"]["2"] == body["prompt"]["2"]


# --- FaceID trio on a synthetic InsightFace pack --------------------------------------------------------


@pytest.fixture(scope="module")
def face_env(case, host_dirs, ipadapter_dir):
    pytest.importorskip("insightface")
    import utils.extra_config

    from tests.fixtures.adapters import adapter_state_dict
    from tests.fixtures.comfy_models import diffusers_widths
    from tests.fixtures.face_models import write_pack

    root = host_dirs["work"] / "v1-faceid"
    write_pack(root / "insightface", "buffalo_l")
    config = root / "extra_model_paths.yaml"
    config.write_text(f"v1_faceid:\n  base_path: {root}\n  insightface: insightface\n")
    utils.extra_config.load_extra_path_config(str(config))
    folder = ipadapter_dir / "v1-faceid"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(adapter_state_dict("ip-adapter-faceid_sd15.bin", seed=5, sites=diffusers_widths(case["model"])),
               folder / "ip-adapter-faceid_sd15.bin")
    return harness.run_node("IPAdapterModelLoader", ipadapter_file="v1-faceid/ip-adapter-faceid_sd15.bin")[0]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_faceid_trio_runs_like_v1(case, face_env):
    from tests.fixtures.face_models import face_image

    photo = torch.from_numpy(face_image(300, 400, 0))[None]
    insightface = harness.run_node("InsightFaceLoader", provider="CPU")[0]
    prepared_image = harness.run_node("PrepImageForInsightFace", image=photo, crop_position="center", sharpening=0.0,
                                      pad_around=True)[0]
    assert prepared_image.shape == (1, 640, 640, 3)
    assert torch.equal(prepared_image[:, :30], torch.ones(1, 30, 640, 3)), "the 30 px border is not white"
    inputs = dict(ipadapter=face_env, clip_vision=case["clip_vision"], insightface=insightface, image=prepared_image,
                  model=case["model"], weight=1.0, noise=0.0, weight_type="original", start_at=0.0, end_at=1.0,
                  faceid_v2=False, weight_v2=1.0, unfold_batch=False)
    latent = harness.sample(harness.run_node("IPAdapterApplyFaceID", **inputs)[0])
    assert not torch.equal(latent, case["base"])
    assert torch.equal(latent, harness.sample(harness.run_node("IPAdapterApplyFaceID", **inputs)[0]))
    with pytest.raises(harness.error_type(), match="FaceID"):
        _v1_apply(case, ipadapter=face_env)
    plain = dict(inputs, ipadapter=case["ipadapter"], image=case["image"], weight=0.8)
    assert torch.equal(harness.sample(harness.run_node("IPAdapterApplyFaceID", **plain)[0]),
                       harness.sample(_v1_apply(case)))


# --- the real server: v1-era UI workflows ----------------------------------------------------------------

V1_SOCKETS = {  # incumbent-v1.md §1: (required, optional) in order
    "IPAdapterApply": (["ipadapter", "clip_vision", "image", "model", "weight", "noise", "weight_type", "start_at",
                        "end_at", "unfold_batch"], ["attn_mask"]),
    "IPAdapterApplyEncoded": (["ipadapter", "embeds", "model", "weight", "weight_type", "start_at", "end_at",
                               "unfold_batch"], ["attn_mask"]),
    "IPAdapterApplyFaceID": (["ipadapter", "clip_vision", "insightface", "image", "model", "weight", "noise",
                              "weight_type", "start_at", "end_at", "faceid_v2", "weight_v2", "unfold_batch"],
                             ["attn_mask"]),
    "IPAdapterTilesMasked": (["ipadapter", "clip_vision", "image", "model", "weight", "noise", "weight_type",
                              "start_at", "end_at", "short_side_tiles", "tile_weight"], []),
    "IPAdapterEncoderV1": (["clip_vision", "image_1", "ipadapter_plus", "noise", "weight_1"],
                           ["image_2", "image_3", "image_4", "weight_2", "weight_3", "weight_4"]),
    "IPAdapterBatchEmbeds": (["embed1", "embed2"], []),
    "InsightFaceLoader": (["provider"], []),
    "PrepImageForInsightFace": (["image", "crop_position", "sharpening", "pad_around"], []),
}


@pytest.mark.slow
@pytest.mark.parametrize("node_id", sorted(V1_SOCKETS))
def test_server_has_v1_signatures(demo_server, node_id):  # noqa: F811
    order = demo_server.object_info[node_id]["input_order"]
    assert (order.get("required"), order.get("optional") or []) == V1_SOCKETS[node_id]


def _run_v1(server, described, label: str, encoder_as_shared_id: bool = False):
    workflow = v1.workflow(v1.from_object_info(server.object_info), described)
    v1.migrate(workflow)
    prompt = prepared(server, workflow)
    if encoder_as_shared_id:  # as an old API prompt names it: the server's prompt handler must route it
        for node in prompt.values():
            if node["class_type"] == "IPAdapterEncoderV1":
                node["class_type"] = "IPAdapterEncoder"
    images = run_images(server, prompt, label)
    assert images and all(im.shape == (64, 64, 3) and im.std() > 1.0 for im in images)
    return images


@pytest.mark.slow
def test_server_runs_v1_apply_with_noise(demo_server):  # noqa: F811
    noisy = _run_v1(demo_server, v1.apply_v1(), "v1_apply_noise")
    plain = _run_v1(demo_server, v1.apply_v1([0.8, 0.0, "original", 0.0, 1.0, False]), "v1_apply")
    assert (noisy[0] != plain[0]).any(), "noise had no effect on the image"


@pytest.mark.slow
def test_server_runs_v1_apply_saved_in_november_2023(demo_server):  # noqa: F811
    _run_v1(demo_server, v1.apply_v1([0.8, 0.0, "linear"]), "v1_apply_3_items")


@pytest.mark.slow
def test_server_runs_v1_encoder_and_apply_encoded(demo_server):  # noqa: F811
    _run_v1(demo_server, v1.encoded_v1(), "v1_encoded", encoder_as_shared_id=True)


@pytest.mark.slow
def test_server_runs_v1_batch_embeds(demo_server):  # noqa: F811
    images = _run_v1(demo_server, v1.encoded_v1(batch_embeds=True), "v1_batch_embeds")
    assert len(images) == 2


@pytest.mark.slow
def test_server_runs_v1_tiles_masked(demo_server):  # noqa: F811
    _run_v1(demo_server, v1.tiles_v1(), "v1_tiles")
