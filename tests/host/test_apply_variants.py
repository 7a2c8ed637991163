"""The apply variants in real ComfyUI (in-process, CPU) on reduced SD1.5 and SDXL UNets.

Each node is sampled once to show it changes the latent; what it does is then measured per
attn2 site on identical captured inputs (``probe``), against hand-built expectations made from
IPAdapterAdvanced/IPAdapterEmbeds applications: batch rows, style/composition routing, precise
swaps, layer weights, tile masks, regional params and the enhancer's merged embeds.
"""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.comfy_models import tiny_clip_vision, transformer_indices
from tests.host import harness, probe
from tests.host import variant_fixtures as vf
from tests.host.variant_fixtures import ADV, advanced, changed, close, same_as

OPT = ["image_negative", "attn_mask", "clip_vision"]
SC = ["image_style", "image_composition", "weight_style", "weight_composition", "expand_style"]
TAIL = ["start_at", "end_at", "embeds_scaling"]
# Widget order after model, ipadapter (incumbent.md §1.2); saved workflows depend on it.
DECLARED = {
    "IPAdapterBatch": (["image", "weight", "weight_type", *TAIL, "encode_batch_size"], OPT),
    "IPAdapterTiled": (["image", "weight", "weight_type", "combine_embeds", "start_at", "end_at", "sharpening",
                        "embeds_scaling"], OPT),
    "IPAdapterTiledBatch": (["image", "weight", "weight_type", "start_at", "end_at", "sharpening", "embeds_scaling",
                             "encode_batch_size"], OPT),
    "IPAdapterEmbedsBatch": (["pos_embed", "weight", "weight_type", *TAIL], ["neg_embed", "attn_mask", "clip_vision"]),
    "IPAdapterStyleComposition": ([*SC, "combine_embeds", *TAIL], OPT),
    "IPAdapterStyleCompositionBatch": ([*SC, *TAIL], OPT),
    "IPAdapterMS": (["image", "weight", "weight_faceidv2", "weight_type", "combine_embeds", *TAIL, "layer_weights"],
                    [*OPT, "insightface"]),
    "IPAdapterClipVisionEnhancer": (["image", "weight", "weight_type", "combine_embeds", *TAIL, "enhance_tiles",
                                     "enhance_ratio"], OPT),
    "IPAdapterClipVisionEnhancerBatch": (["image", "weight", "weight_type", *TAIL, "enhance_tiles", "enhance_ratio",
                                          "encode_batch_size"], OPT),
    "IPAdapterFromParams": (["ipadapter_params", "combine_embeds", "embeds_scaling"],
                            ["image_negative", "clip_vision"]),
    "IPAdapterPreciseStyleTransfer": (["image", "weight", "style_boost", "combine_embeds", *TAIL], OPT),
    "IPAdapterPreciseStyleTransferBatch": (["image", "weight", "style_boost", "combine_embeds", *TAIL], OPT),
    "IPAdapterPreciseComposition": (["image", "weight", "composition_boost", "combine_embeds", *TAIL], OPT),
    "IPAdapterPreciseCompositionBatch": (["image", "weight", "composition_boost", "combine_embeds", *TAIL], OPT),
}
WIDGETS = {  # (node, input): (default, min, max, step or None)
    ("IPAdapterBatch", "weight"): (1.0, -1, 5, 0.05), ("IPAdapterBatch", "encode_batch_size"): (0, 0, 4096, None),
    ("IPAdapterTiled", "weight"): (1.0, -1, 3, 0.05), ("IPAdapterTiledBatch", "weight"): (1.0, -1, 3, 0.05),
    ("IPAdapterTiled", "sharpening"): (0.0, 0, 1, 0.05), ("IPAdapterEmbedsBatch", "weight"): (1.0, -1, 3, 0.05),
    ("IPAdapterStyleComposition", "weight_composition"): (1.0, -1, 5, 0.05),
    ("IPAdapterMS", "weight_faceidv2"): (1.0, -1, 5, 0.05),
    ("IPAdapterClipVisionEnhancer", "enhance_tiles"): (2, 1, 16, None),
    ("IPAdapterClipVisionEnhancer", "enhance_ratio"): (1.0, 0, 1, 0.05),
    ("IPAdapterClipVisionEnhancerBatch", "enhance_ratio"): (0.5, 0, 1, 0.05),
    ("IPAdapterPreciseStyleTransfer", "style_boost"): (1.0, -5, 5, 0.05),
    ("IPAdapterPreciseComposition", "composition_boost"): (0.0, -5, 5, 0.05),
}


@pytest.fixture
def s(pack, unet, ipadapter_dir, clip_vision, reference_image):
    return vf.setup("sd15-reduced", unet, ipadapter_dir, clip_vision, reference_image)


def _error_type():
    return harness.pack_module("ipadapter_core.errors").IPAdapterError


@pytest.mark.parametrize("node_id", sorted(DECLARED))
def test_declared_inputs_match_the_incumbent(pack, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    spec = cls.INPUT_TYPES()
    required, optional = DECLARED[node_id]
    assert list(spec["required"]) == ["model", "ipadapter", *required]
    assert list(spec.get("optional", {})) == optional
    for name, value in {**spec["required"], **spec.get("optional", {})}.items():
        assert value[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    for (node, name), (default, lo, hi, step) in WIDGETS.items():
        if node == node_id:
            opts = spec["required"][name][1]
            assert (opts["default"], opts["min"], opts["max"], opts.get("step")) == (default, lo, hi, step), name
    if "combine_embeds" in spec["required"] and node_id.startswith("IPAdapterStyleComposition"):
        assert spec["required"]["combine_embeds"][1]["default"] == "average"
    if node_id == "IPAdapterMS":
        kind, opts = spec["required"]["layer_weights"]
        assert kind == "STRING" and opts["multiline"] and opts["default"] == ""
    assert cls.RETURN_TYPES == (("MODEL", "IMAGE", "MASK") if "Tiled" in node_id else ("MODEL",))


def _params(s, weights=(1.0, 0.8), types=("linear", "ease in")) -> dict:
    left, right = torch.zeros(1, 64, 64), torch.zeros(1, 64, 64)
    left[:, :, :32], right[:, :, 32:] = 1.0, 1.0
    return {"image": [s["A"], s["B"]], "attn_mask": [left, right], "weight": list(weights), "weight_type": list(types),
            "start_at": [0.0, 0.0], "end_at": [1.0, 1.0]}


def _inputs(node_id: str, s: dict) -> dict:
    """Every declared input of the node, with values that make it act."""
    both = torch.cat([s["A"], s["B"]])
    common = dict(model=s["model"], ipadapter=s["basic"], clip_vision=s["clip_vision"], weight=1.0,
                  weight_type="linear", **ADV)
    extra = {
        "IPAdapterBatch": dict(image=both, encode_batch_size=0),
        "IPAdapterTiled": dict(image=s["wide"], sharpening=0.0),
        "IPAdapterTiledBatch": dict(image=s["wide"], sharpening=0.0, encode_batch_size=0),
        "IPAdapterEmbedsBatch": dict(pos_embed=harness.run_node("IPAdapterEncoder", ipadapter=s["basic"], image=both,
                                                                weight=1.0, clip_vision=s["clip_vision"])[0]),
        "IPAdapterStyleComposition": dict(image_style=s["A"], image_composition=s["B"], weight_style=1.0,
                                          weight_composition=1.0, expand_style=False, combine_embeds="average"),
        "IPAdapterMS": dict(image=s["A"], weight_faceidv2=1.0, layer_weights="0:1, 5:1"),
        "IPAdapterClipVisionEnhancer": dict(image=s["big"], enhance_tiles=2, enhance_ratio=1.0),
        "IPAdapterFromParams": dict(ipadapter_params=_params(s)),
        "IPAdapterPreciseStyleTransfer": dict(image=s["A"], style_boost=1.0),
        "IPAdapterPreciseComposition": dict(image=s["A"], composition_boost=0.0),
    }
    base_id = node_id.removesuffix("Batch") if node_id not in extra else node_id
    inputs = {**common, **extra[base_id]}
    if node_id == "IPAdapterStyleCompositionBatch":
        inputs.pop("combine_embeds")
    if node_id == "IPAdapterClipVisionEnhancerBatch":
        inputs.update(encode_batch_size=0, enhance_ratio=0.5)
        inputs.pop("combine_embeds")
    required, optional = DECLARED[node_id]
    declared = {"model", "ipadapter", *required, *optional}
    inputs = {k: v for k, v in inputs.items() if k in declared}
    assert {"model", "ipadapter", *required} <= set(inputs), node_id
    return inputs


@pytest.mark.parametrize("node_id", sorted(DECLARED))
def test_every_variant_changes_the_sampled_latent(s, node_id):
    out = harness.run_node(node_id, **_inputs(node_id, s))
    assert out[0] is not s["model"]
    assert changed(harness.sample(out[0]), s["base"]), f"{node_id} had no visible effect"
    assert not probe.patch_at(s["model"], next(iter(s["inputs"]))), "the input model was patched"


# --- batch: image i -> latent i ----------------------------------------------------------------------


def _batch(s, image, **options):
    inputs = dict(model=s["model"], ipadapter=s["basic"], image=image, weight=1.0, weight_type="linear",
                  start_at=0.0, end_at=1.0, embeds_scaling="V only", encode_batch_size=0, clip_vision=s["clip_vision"])
    return harness.run_node("IPAdapterBatch", **{**inputs, **options})[0]


def test_batch_gives_each_latent_its_own_image(s):
    only_a = harness.sample(advanced(s, s["A"]), batch=2)
    only_b = harness.sample(advanced(s, s["B"]), batch=2)
    ab = harness.sample(_batch(s, torch.cat([s["A"], s["B"]])), batch=2)
    ba = harness.sample(_batch(s, torch.cat([s["B"], s["A"]])), batch=2)
    for i in range(2):
        a, b = only_a[i], only_b[i]
        assert same_as(ab[i], (a, b)[i], (b, a)[i])
        assert same_as(ba[i], (b, a)[i], (a, b)[i])  # swapping the images swaps their latents
    single = harness.sample(_batch(s, s["A"]), batch=2)  # fewer images than latents: the last repeats
    assert same_as(single[1], only_a[1], only_b[1])


def test_per_frame_weights_zero_leaves_that_latent_untouched(s):
    latent = harness.sample(_batch(s, torch.cat([s["A"], s["B"]]), weight=[0.0, 1.0]), batch=2)
    assert torch.equal(latent[0], s["base2"][0])
    assert changed(latent[1], s["base2"][1])


def test_encode_batch_size_encodes_in_chunks_with_the_same_result(s, monkeypatch):
    host, encoding = harness.pack_module("nodes.host"), harness.pack_module("nodes.encoding")
    monkeypatch.setattr(encoding, "ENCODINGS", encoding.EncodingCache())  # count real encoder runs
    calls: list[int] = []
    original = host.encode_image
    monkeypatch.setattr(host, "encode_image", lambda cv, image, mask=None, **kw: calls.append(image.shape[0])
                        or original(cv, image, mask, **kw))
    three = torch.cat([s["A"], s["B"], s["A"].flip(1)])
    whole, chunked = _batch(s, three), _batch(s, three, encode_batch_size=2)
    assert calls == [3, 2, 1]
    key = next(iter(s["inputs"]))
    a, b = (probe.patch_at(m, key).applications[-1].sites[key] for m in (whole, chunked))
    assert a.k_cond.shape[0] == 3 and close(a.k_cond, b.k_cond, 1e-5) and close(a.v_cond, b.v_cond, 1e-5)


def test_embeds_batch_matches_the_image_batch(s):
    both = torch.cat([s["A"], s["B"]])
    pos = harness.run_node("IPAdapterEncoder", ipadapter=s["basic"], image=both, weight=1.0,
                           clip_vision=s["clip_vision"])[0]
    patched = harness.run_node("IPAdapterEmbedsBatch", model=s["model"], ipadapter=s["basic"], pos_embed=pos,
                               weight=1.0, weight_type="linear", start_at=0.0, end_at=1.0, embeds_scaling="V only")[0]
    key = next(iter(s["inputs"]))
    got, expected = (probe.patch_at(m, key).applications[-1].sites[key] for m in (patched, _batch(s, both)))
    assert got.k_cond.shape[0] == 2  # one row per image: row i conditions latent i
    for a, b in ((got.k_cond, expected.k_cond), (got.v_cond, expected.v_cond), (got.k_uncond, expected.k_uncond)):
        assert close(a, b, 1e-5)


# --- per-site expectations -----------------------------------------------------------------------------


def _expect(s, table: dict[int, tuple[float, bool]], image=None, adapter="basic") -> dict:
    """Per-site contributions from a weight-1 linear application, scaled (and swapped) per transformer index."""
    reference = advanced(s, s["A"] if image is None else image, adapter=adapter)
    lin = probe.contributions(reference, s["inputs"])
    cou = next(iter(s["inputs"].values())).extra["cond_or_uncond"]
    all_cond = probe.contributions(reference, s["inputs"], cond_or_uncond=[0] * len(cou))
    uncond = probe.chunk_rows(s["inputs"], 1)
    t_of = transformer_indices(s["model"])
    out = {}
    for key, value in lin.items():
        weight, swap = table.get(t_of[key], (0.0, False))
        if swap:
            out[key] = torch.zeros_like(value)
            out[key][uncond] = weight * all_cond[key][uncond]
        else:
            out[key] = weight * value
    return out


def _assert_sites(got: dict, expected: dict, t_of: dict) -> None:
    problems = [f"{key} (t={t_of[key]})" for key in got if not close(got[key], expected[key])]
    assert not problems, "unexpected contribution at " + ", ".join(problems)


@pytest.mark.parametrize("expand", [False, True])
@pytest.mark.parametrize("unet_name", ["sd15-reduced", "sdxl-reduced"])
def test_style_composition_routes_each_image_to_its_layers(pack, unet, ipadapter_dir, clip_vision, reference_image,
                                                         unet_name, expand):
    s = vf.setup(unet_name, unet, ipadapter_dir, clip_vision, reference_image)
    ws, wc = 0.7, 1.3
    t_of = transformer_indices(s["model"])
    if s["family"] == "sd15":  # incumbent.md §4.3: style 0-3, 9-15; composition 4 (x0.25), 5
        comp = {4: wc if expand else 0.25 * wc, 5: wc}
        style = {t: ws for t in range(16) if t not in (4, 5) and (expand or t < 4 or t > 8)}
    else:  # SDXL: style 6, composition 3
        comp, style = {3: wc}, {t: ws for t in range(11) if t != 3 and (expand or t == 6)}
    patched = harness.run_node("IPAdapterStyleComposition", model=s["model"], ipadapter=s["basic"],
                               image_style=s["A"], image_composition=s["B"], weight_style=ws, weight_composition=wc,
                               expand_style=expand, combine_embeds="average", start_at=0.0, end_at=1.0,
                               embeds_scaling="V only", clip_vision=clip_vision)[0]
    got = probe.contributions(patched, s["inputs"])
    from_style = _expect(s, {t: (w, False) for t, w in style.items()}, s["A"])
    from_comp = _expect(s, {t: (w, False) for t, w in comp.items()}, s["B"])
    _assert_sites(got, {k: from_style[k] + from_comp[k] for k in got}, t_of)
    acting = [k for k in got if t_of[k] in comp]
    assert acting and all(got[k].abs().max() > 0 for k in acting), "no composition layer in this UNet acted"
    if not expand:
        assert changed(harness.sample(patched), s["base"])


def test_precise_style_transfer_boosts_and_swaps_the_composition_layers(s):
    w, b = 0.6, 1.5
    patched = harness.run_node("IPAdapterPreciseStyleTransfer", model=s["model"], ipadapter=s["basic"], image=s["A"],
                               weight=w, style_boost=b, clip_vision=s["clip_vision"], **ADV)[0]
    table = {**{t: (w, False) for t in range(4)}, 4: (0.25 * b, True), 5: (b, True)}  # t 9-15 absent here
    _assert_sites(probe.contributions(patched, s["inputs"]), _expect(s, table), transformer_indices(s["model"]))


def test_precise_composition_boosts_and_swaps_the_other_layers(s):
    w, b = 0.6, 1.5
    patched = harness.run_node("IPAdapterPreciseComposition", model=s["model"], ipadapter=s["basic"], image=s["A"],
                               weight=w, composition_boost=b, clip_vision=s["clip_vision"], **ADV)[0]
    table = {**{t: (b, True) for t in range(4)}, 4: (0.25 * w, False), 5: (w, False), 6: (0.1 * b, True)}
    _assert_sites(probe.contributions(patched, s["inputs"]), _expect(s, table), transformer_indices(s["model"]))


def _ms(s, layer_weights: str, weight_type: str = "ease in", weight: float = 0.8, ipadapter=None):
    return harness.run_node("IPAdapterMS", model=s["model"], ipadapter=ipadapter or s["basic"], image=s["A"],
                            weight=weight, weight_faceidv2=1.0, weight_type=weight_type, layer_weights=layer_weights,
                            clip_vision=s["clip_vision"], **ADV)[0]


def test_mad_scientist_layer_weights_act_only_on_the_listed_layers(s):
    t_of = transformer_indices(s["model"])
    got = probe.contributions(_ms(s, "1:0.5,\n5:2"), s["inputs"])  # 'ease in' is replaced by linear
    _assert_sites(got, _expect(s, {1: (0.4, False), 5: (1.6, False)}), t_of)
    got = probe.contributions(_ms(s, "4:1, 5:0.5", weight_type="style transfer precise"), s["inputs"])
    _assert_sites(got, _expect(s, {4: (0.8, True), 5: (0.4, True)}), t_of)  # precise types keep their swaps
    got = probe.contributions(_ms(s, "", weight_type="style transfer"), s["inputs"])
    _assert_sites(got, _expect(s, {t: (0.8, False) for t in range(4)}), t_of)  # empty: the weight type applies


def test_mad_scientist_refuses_unknown_layers(s):
    with pytest.raises(_error_type(), match="Layer 30 does not exist") as err:
        _ms(s, "2:1, 30:1")
    assert "[IPAdapter Mad Scientist" in str(err.value) and "layer_weights" in str(err.value)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image deprecation inside insightface
def test_mad_scientist_takes_faceid_adapters_with_layer_weights(s, tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    from tests.fixtures.adapters import write_adapter
    from tests.fixtures.comfy_models import diffusers_widths
    from tests.fixtures.face_models import face_image, write_pack

    write_pack(tmp_path / "insightface", "buffalo_l")
    fp = harness.folder_paths()
    monkeypatch.setitem(fp.folder_names_and_paths, "insightface", ([str(tmp_path / "insightface")], set()))
    face_model = harness.pack_module("nodes.faceid_nodes").face_model("buffalo_l", "CPU")
    portrait = vf.load_path(write_adapter("ip-adapter-faceid-portrait-v11_sd15.bin", tmp_path,
                                          sites=diffusers_widths(s["model"])))
    face = torch.from_numpy(face_image(256, 256, 0)).unsqueeze(0)
    got = probe.contributions(harness.run_node(
        "IPAdapterMS", model=s["model"], ipadapter=portrait, image=face, weight=1.0, weight_faceidv2=1.0,
        weight_type="linear", layer_weights="2:1", insightface=face_model, **ADV)[0], s["inputs"])
    t_of = transformer_indices(s["model"])
    assert all((got[k].abs().max() > 0) == (t_of[k] == 2) for k in got), "FaceID tokens must act at layer 2 only"


# --- enhancer --------------------------------------------------------------------------------------------


def _enhancer(s, adapter="basic", tiles=2, ratio=0.7, node="IPAdapterClipVisionEnhancer", clip_vision=None, **extra):
    inputs = dict(model=s["model"], ipadapter=s[adapter] if isinstance(adapter, str) else adapter, image=s["big"],
                  weight=1.0, weight_type="linear", enhance_tiles=tiles, enhance_ratio=ratio,
                  clip_vision=clip_vision or s["clip_vision"], **ADV)
    if node.endswith("Batch"):
        inputs.pop("combine_embeds")
        inputs["encode_batch_size"] = 0
    return harness.run_node(node, **{**inputs, **extra})[0]


@pytest.mark.parametrize("adapter", ["basic", "plus"])
def test_enhancer_adds_the_merged_crops_as_a_second_reference(s, adapter):
    enhancer = harness.pack_module("ipadapter_core.enhancer")
    encode = harness.pack_module("nodes.encoding").encode
    kind = s[adapter].adapter.kind
    full = encode(s["clip_vision"], kind, s["big"])
    crops = enhancer.split_tiles(s["big"], 2)
    merged = enhancer.merge(encode(s["clip_vision"], kind, crops.reshape(-1, *crops.shape[2:])), 2)
    embeds = harness.run_node("IPAdapterEmbeds", model=s["model"], ipadapter=s[adapter],
                              pos_embed=torch.cat([full * 0.7, merged]), weight=1.0, weight_type="linear",
                              start_at=0.0, end_at=1.0, embeds_scaling="V only", clip_vision=s["clip_vision"])[0]
    got = probe.contributions(_enhancer(s, adapter), s["inputs"])
    _assert_sites(got, probe.contributions(embeds, s["inputs"]), transformer_indices(s["model"]))
    plain = probe.contributions(advanced(s, s["big"], adapter=adapter), s["inputs"])
    _assert_sites(probe.contributions(_enhancer(s, adapter, tiles=1), s["inputs"]), plain,
                  transformer_indices(s["model"]))


def test_enhancer_batch_at_ratio_one_is_the_plain_batch(s):
    got = probe.contributions(_enhancer(s, ratio=1.0, node="IPAdapterClipVisionEnhancerBatch"), s["inputs"])
    _assert_sites(got, probe.contributions(_batch(s, s["big"]), s["inputs"]), transformer_indices(s["model"]))
    blended = probe.contributions(_enhancer(s, ratio=0.5, node="IPAdapterClipVisionEnhancerBatch"), s["inputs"])
    assert any(not close(blended[k], got[k]) for k in got)


def test_enhancer_works_with_a_1280_wide_pooled_encoder(s, tmp_path):
    """The incumbent reshaped image_embeds into sqrt(D) x sqrt(D) and failed for 1280 (ViT-bigG)."""
    from tests.fixtures.adapters import write_adapter
    from tests.fixtures.comfy_models import diffusers_widths

    vit_g = vf.load_path(write_adapter("ip-adapter_sd15_vit-G.safetensors", tmp_path,
                                       sites=diffusers_widths(s["model"])))
    wide_encoder = tiny_clip_vision(tmp_path, seed=3, projection_dim=1280)
    enhanced = _enhancer(s, vit_g, tiles=3, ratio=0.5, clip_vision=wide_encoder)
    plain = _enhancer(s, vit_g, tiles=1, clip_vision=wide_encoder)
    got, ref = (probe.contributions(m, s["inputs"]) for m in (enhanced, plain))
    assert any(not close(got[k], ref[k]) for k in got)


# --- tiles and regions ------------------------------------------------------------------------------------


def _tiled(s, image, node="IPAdapterTiled", **extra):
    inputs = dict(model=s["model"], ipadapter=s["basic"], image=image, weight=1.0, weight_type="linear",
                  sharpening=0.0, clip_vision=s["clip_vision"], **ADV)
    if node.endswith("Batch"):
        inputs.pop("combine_embeds")
        inputs["encode_batch_size"] = 0
    return harness.run_node(node, **{**inputs, **extra})


@pytest.mark.parametrize("image, count, mask_shape", [("wide", 2, (256, 341)), ("big", 4, (512, 512))])
def test_tiled_applies_one_masked_adapter_per_tile(s, image, count, mask_shape):
    model, tiles, masks = _tiled(s, s[image])
    assert tiles.shape == (count, 256, 256, 3) and masks.shape == (count, *mask_shape)
    key = next(iter(s["inputs"]))
    assert len(probe.patch_at(model, key).applications) == count
    expected: dict = {}
    for i in range(count):
        single = probe.contributions(advanced(s, tiles[i:i + 1], attn_mask=masks[i:i + 1]), s["inputs"])
        expected = {k: expected.get(k, 0) + v for k, v in single.items()}
    _assert_sites(probe.contributions(model, s["inputs"]), expected, transformer_indices(s["model"]))


def test_tiled_batch_tiles_every_image(s):
    model, tiles, masks = _tiled(s, torch.cat([s["wide"], s["wide"].flip(2)]), node="IPAdapterTiledBatch")
    assert tiles.shape == (4, 256, 256, 3) and masks.shape == (2, 256, 341)
    assert changed(harness.sample(model, batch=2)[1], s["base2"][1])


def test_from_params_applies_one_masked_adapter_per_region(s):
    params = _params(s)
    patched = harness.run_node("IPAdapterFromParams", model=s["model"], ipadapter=s["basic"], ipadapter_params=params,
                               combine_embeds="concat", embeds_scaling="V only", clip_vision=s["clip_vision"])[0]
    key = next(iter(s["inputs"]))
    assert len(probe.patch_at(patched, key).applications) == 2
    regions = [advanced(s, params["image"][i], weight=params["weight"][i], weight_type=params["weight_type"][i],
                        attn_mask=params["attn_mask"][i]) for i in range(2)]
    first, second = (probe.contributions(m, s["inputs"]) for m in regions)
    _assert_sites(probe.contributions(patched, s["inputs"]), {k: first[k] + second[k] for k in first},
                  transformer_indices(s["model"]))


def test_from_params_explains_malformed_params(s):
    params = {**_params(s), "weight": [1.0]}
    with pytest.raises(_error_type(), match="different lengths") as err:
        harness.run_node("IPAdapterFromParams", model=s["model"], ipadapter=s["basic"], ipadapter_params=params,
                         combine_embeds="concat", embeds_scaling="V only", clip_vision=s["clip_vision"])
    assert "[IPAdapter from Params / input 'ipadapter_params']" in str(err.value)
