"""End to end through the real ComfyUI server: HTTP API, UI-format workflows, a full-size SD1.5 checkpoint.

One server per module (``main.py --cpu`` on 127.0.0.1, the pack loaded through an extra_model_paths
``custom_nodes:`` entry), the random-weight demo model set (tests/fixtures/demo_models.py), and the
shipped workflows converted by ``ipadapter_cli.convert`` at 64x64 px and 2 steps.
"""

from __future__ import annotations

import copy
import io
import json
import time

import numpy as np
import pytest

from ipadapter_cli import edit
from ipadapter_cli.client import ComfyError
from ipadapter_cli.convert import MODE_BYPASS, convert
from ipadapter_cli.server import PACK_LINK
from ipadapter_cli.workflow import load_workflow
from tests.host.server_fixtures import demo_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

STEPS, SIZE = 2, 64
CHECKPOINT = "demo_sd15.safetensors"
REFERENCE = "ipadapter_demo_reference.png"
CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"

# incumbent.md §1: (required, optional) input names in order, for every node id the pack shares with it.
INCUMBENT_INPUTS = {
    "IPAdapterUnifiedLoader": (["model", "preset"], ["ipadapter"]),
    "IPAdapterModelLoader": (["ipadapter_file"], []),
    "IPAdapter": (["model", "ipadapter", "image", "weight", "start_at", "end_at", "weight_type"], ["attn_mask"]),
    "IPAdapterAdvanced": (
        ["model", "ipadapter", "image", "weight", "weight_type", "combine_embeds", "start_at", "end_at",
         "embeds_scaling"],
        ["image_negative", "attn_mask", "clip_vision"],
    ),
    "IPAdapterEncoder": (["ipadapter", "image", "weight"], ["mask", "clip_vision"]),
    "IPAdapterEmbeds": (
        ["model", "ipadapter", "pos_embed", "weight", "weight_type", "start_at", "end_at", "embeds_scaling"],
        ["neg_embed", "attn_mask", "clip_vision"],
    ),
}
INCUMBENT_PRESETS = [
    "LIGHT - SD1.5 only (low strength)", "STANDARD (medium strength)", "VIT-G (medium strength)",
    "PLUS (high strength)", "PLUS FACE (portraits)", "FULL FACE - SD1.5 only (portraits stronger)",
]
_timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def server(demo_server):  # noqa: F811  (the session's shared server: one ~6 GB ComfyUI for every module)
    yield demo_server
    print("\n[e2e timings] " + ", ".join(f"{k}: {v:.1f} s" for k, v in _timings.items()))


def run(server, prompt: dict, label: str) -> np.ndarray:
    """Queue ``prompt``; returns the single output image as uint8 [H, W, 3] (fails with the server log)."""
    from PIL import Image

    edit.set_inputs(prompt, "SaveImage", filename_prefix=f"e2e_{label}")
    started = time.monotonic()
    try:
        entry = server.client.run(prompt, timeout=900)
    except (ComfyError, TimeoutError) as exc:
        pytest.fail(f"{label}: {exc}\n--- server log (tail) ---\n{server.tail(60)}")
    _timings[label] = time.monotonic() - started
    images = [ref for ref in server.client.images(entry) if ref.get("type") == "output"]
    assert len(images) == 1, f"{label}: expected one output image, got {images}"
    return np.asarray(Image.open(io.BytesIO(server.client.image_bytes(images[0]))).convert("RGB"))


def prepared(server, workflow: dict, **advanced) -> dict:
    """A shipped workflow as a fast prompt: demo checkpoint, 64 px, 2 steps, IPAdapterAdvanced inputs set."""
    prompt = convert(workflow, server.object_info)
    edit.set_inputs(prompt, "CheckpointLoaderSimple", ckpt_name=CHECKPOINT)
    edit.set_inputs(prompt, "EmptyLatentImage", width=SIZE, height=SIZE)
    edit.set_inputs(prompt, "KSampler", steps=STEPS)
    edit.set_inputs(prompt, "LoadImage", image=REFERENCE)
    if advanced:
        assert edit.set_inputs(prompt, "IPAdapterAdvanced", **advanced)
    return prompt


@pytest.mark.parametrize("node_id", sorted(INCUMBENT_INPUTS))
def test_object_info_has_incumbent_inputs(server, node_id):
    info = server.object_info.get(node_id)
    assert info is not None, f"{node_id} missing from /object_info"
    required, optional = INCUMBENT_INPUTS[node_id]
    order = info["input_order"]
    assert order.get("required") == required
    # New capability comes as optional inputs appended after the incumbent's (IPAdapterAdvanced: instantx_v_norm).
    assert (order.get("optional") or [])[:len(optional)] == optional


def test_object_info_presets_and_files(server):
    unified = server.object_info["IPAdapterUnifiedLoader"]["input"]["required"]["preset"]
    # The incumbent's presets first and in its order (saved workflows store the name), then the transformer ones.
    transformers = ["FLUX XLABS v1 (ViT-L)", "FLUX XLABS v2 (ViT-L)", "FLUX INSTANTX (SigLIP)",
                    "SD3.5-LARGE INSTANTX (SigLIP)"]
    assert unified[0] == INCUMBENT_PRESETS + transformers
    files = server.object_info["IPAdapterModelLoader"]["input"]["required"]["ipadapter_file"][0]
    assert {"ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.safetensors"} <= set(files)


_images: dict[str, np.ndarray] = {}


def standard_at(server, weight: float) -> np.ndarray:
    """The shipped STANDARD workflow at this IPAdapterAdvanced weight (each run once per module)."""
    label = f"standard_w{weight:g}"
    if label not in _images:
        _images[label] = run(server, prepared(server, load_workflow("ipadapter_sd15_standard.json"), weight=weight),
                             label)
    return _images[label]


def test_workflows_are_served_as_templates(server):
    templates = server.client.get_json("/api/workflow_templates")
    assert {"ipadapter_sd15_standard", "ipadapter_sd15_plus"} <= set(templates.get(PACK_LINK, [])), templates
    served = server.client.get_json(f"/api/workflow_templates/{PACK_LINK}/ipadapter_sd15_standard.json")
    assert served == load_workflow("ipadapter_sd15_standard.json")
    for node in served["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            assert set(model) == {"name", "url", "directory"} and model["url"].startswith("https://"), model


def test_standard_workflow_makes_an_image(server):
    image = standard_at(server, 1.0)
    assert image.shape == (SIZE, SIZE, 3)
    assert image.std() > 1.0, "the decoded image is flat"


def test_weight_zero_is_the_graph_without_the_adapter(server):
    workflow = load_workflow("ipadapter_sd15_standard.json")
    bypassed = copy.deepcopy(workflow)
    for node in bypassed["nodes"]:
        if node["type"].startswith("IPAdapter"):
            node["mode"] = MODE_BYPASS
    plain = prepared(server, bypassed)
    sampler = edit.find(plain, "KSampler")[0]
    checkpoint = edit.find(plain, "CheckpointLoaderSimple")[0]
    assert plain[sampler]["inputs"]["model"] == [checkpoint, 0], "model not wired straight from the checkpoint"
    assert not [k for k, v in plain.items() if v["class_type"].startswith("IPAdapter")]

    without = run(server, plain, "no_adapter")
    weight0, weight1 = standard_at(server, 0.0), standard_at(server, 1.0)
    assert np.array_equal(weight0, without), "weight 0 changed the image"
    diff = np.abs(weight1.astype(int) - without.astype(int))
    assert diff.max() > 0, "weight 1 gave exactly the image without the adapter"


def test_plus_workflow_runs(server):
    image = run(server, prepared(server, load_workflow("ipadapter_sd15_plus.json")), "plus")
    assert image.shape == (SIZE, SIZE, 3)


# --- a workflow as ComfyUI_IPAdapter_plus users have it saved (frontend schema 0.4) -------------------


def incumbent_saved_workflow() -> dict:
    """Every shared node, typed and valued as the incumbent's example workflows save them, stacked on one model."""
    nodes = [  # id, type, inputs (name, type), outputs (name, type), widgets_values
        (4, "CheckpointLoaderSimple", [], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")], [CHECKPOINT]),
        (11, "IPAdapterUnifiedLoader", [("model", "MODEL"), ("ipadapter", "IPADAPTER")],
         [("model", "MODEL"), ("ipadapter", "IPADAPTER")], ["STANDARD (medium strength)"]),
        (12, "LoadImage", [], [("IMAGE", "IMAGE"), ("MASK", "MASK")], [REFERENCE, "image"]),
        (10, "IPAdapter", [("model", "MODEL"), ("ipadapter", "IPADAPTER"), ("image", "IMAGE"), ("attn_mask", "MASK")],
         [("MODEL", "MODEL")], [0.8, 0, 1, "standard"]),
        (15, "IPAdapterModelLoader", [], [("IPADAPTER", "IPADAPTER")], ["ip-adapter-plus_sd15.safetensors"]),
        (16, "CLIPVisionLoader", [], [("CLIP_VISION", "CLIP_VISION")], [CLIP_VISION]),
        (14, "IPAdapterAdvanced",
         [("model", "MODEL"), ("ipadapter", "IPADAPTER"), ("image", "IMAGE"), ("image_negative", "IMAGE"),
          ("attn_mask", "MASK"), ("clip_vision", "CLIP_VISION")],
         [("MODEL", "MODEL")], [0.8, "linear", "concat", 0, 1, "V only"]),
        (17, "IPAdapterEncoder", [("ipadapter", "IPADAPTER"), ("image", "IMAGE"), ("mask", "MASK"),
                                  ("clip_vision", "CLIP_VISION")],
         [("pos_embed", "EMBEDS"), ("neg_embed", "EMBEDS")], [1]),
        (18, "IPAdapterEmbeds",
         [("model", "MODEL"), ("ipadapter", "IPADAPTER"), ("pos_embed", "EMBEDS"), ("neg_embed", "EMBEDS"),
          ("attn_mask", "MASK"), ("clip_vision", "CLIP_VISION")],
         [("MODEL", "MODEL")], [1, "linear", 0, 1, "V only"]),
        (6, "CLIPTextEncode", [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], ["a woman on a park bench"]),
        (7, "CLIPTextEncode", [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], ["blurry, lowres"]),
        (5, "EmptyLatentImage", [], [("LATENT", "LATENT")], [SIZE, SIZE, 1]),
        (3, "KSampler", [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                         ("latent_image", "LATENT")], [("LATENT", "LATENT")],
         [0, "fixed", STEPS, 6.5, "dpmpp_2m", "karras", 1]),
        (8, "VAEDecode", [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], None),
        (9, "SaveImage", [("images", "IMAGE")], [], ["IPAdapter"]),
    ]
    links = [  # origin id, slot -> target id, slot
        (4, 0, 11, 0), (11, 0, 10, 0), (11, 1, 10, 1), (12, 0, 10, 2), (10, 0, 14, 0), (15, 0, 14, 1),
        (12, 0, 14, 2), (16, 0, 14, 5), (11, 1, 17, 0), (12, 0, 17, 1), (14, 0, 18, 0), (11, 1, 18, 1),
        (17, 0, 18, 2), (17, 1, 18, 3), (18, 0, 3, 0), (4, 1, 6, 0), (4, 1, 7, 0), (6, 0, 3, 1), (7, 0, 3, 2),
        (5, 0, 3, 3), (3, 0, 8, 0), (4, 2, 8, 1), (8, 0, 9, 0),
    ]
    out_nodes = []
    for order, (node_id, kind, inputs, outputs, widgets) in enumerate(nodes):
        node = {"id": node_id, "type": kind, "pos": [100 * order, 100], "size": {"0": 315, "1": 98}, "flags": {},
                "order": order, "mode": 0,
                "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
                "outputs": [{"name": n, "type": t, "links": [], "shape": 3, "slot_index": i}
                            for i, (n, t) in enumerate(outputs)],
                "properties": {"Node name for S&R": kind}}
        if widgets is not None:
            node["widgets_values"] = widgets
        out_nodes.append(node)
    by_id = {n["id"]: n for n in out_nodes}
    ui_links = []
    for link_id, (src, src_slot, dst, dst_slot) in enumerate(links, start=1):
        kind = by_id[src]["outputs"][src_slot]["type"]
        by_id[src]["outputs"][src_slot]["links"].append(link_id)
        by_id[dst]["inputs"][dst_slot]["link"] = link_id
        ui_links.append([link_id, src, src_slot, dst, dst_slot, kind])
    workflow = {"last_node_id": 18, "last_link_id": len(ui_links), "nodes": out_nodes, "links": ui_links,
                "groups": [], "config": {}, "extra": {}, "version": 0.4}
    return json.loads(json.dumps(workflow))


def test_incumbent_saved_workflow_runs_unchanged(server):
    prompt = convert(incumbent_saved_workflow(), server.object_info)
    assert prompt["14"]["inputs"]["weight_type"] == "linear" and prompt["14"]["inputs"]["embeds_scaling"] == "V only"
    assert prompt["10"]["inputs"]["weight_type"] == "standard"
    assert prompt["3"]["inputs"]["seed"] == 0 and prompt["3"]["inputs"]["steps"] == STEPS
    image = run(server, prompt, "incumbent")
    assert image.shape == (SIZE, SIZE, 3)


def test_server_log_shows_the_pack_imported(server):
    log = server.log()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and PACK_LINK in line], log[-3000:]
    assert f"custom_nodes/{PACK_LINK}" in log, "the pack is not in the custom node import list"
    loaded = [line for line in log.splitlines() if line.strip().endswith(f"custom_nodes/{PACK_LINK}")]
    assert loaded and all("IMPORT FAILED" not in line for line in loaded), loaded


# --- the converter on this server's /object_info (no sampling) -------------------------------------------


def test_converter_follows_reroutes_primitives_and_drops_muted_nodes(server):
    workflow = load_workflow("ipadapter_sd15_standard.json")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    sampler, latent = nodes[8], nodes[7]
    # A Reroute on the latent link, a PrimitiveNode driving the seed widget, and a muted extra SaveImage.
    latent_link = next(i["link"] for i in sampler["inputs"] if i["name"] == "latent_image")
    link = next(lk for lk in workflow["links"] if lk[0] == latent_link)
    workflow["nodes"].append({"id": 50, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 90}],
                              "outputs": [{"name": "", "type": "LATENT", "links": [latent_link]}], "properties": {}})
    workflow["links"].append([90, latent["id"], 0, 50, 0, "LATENT"])
    link[1], link[2] = 50, 0
    sampler["inputs"].append({"name": "seed", "type": "INT", "link": 91, "widget": {"name": "seed"}})
    workflow["nodes"].append({"id": 51, "type": "PrimitiveNode", "mode": 0, "widgets_values": [1234, "fixed"],
                              "outputs": [{"name": "INT", "type": "INT", "links": [91], "widget": {"name": "seed"}}]})
    workflow["links"].append([91, 51, 0, 8, len(sampler["inputs"]) - 1, "INT"])
    workflow["nodes"].append({"id": 52, "type": "SaveImage", "mode": 2, "inputs": [{"name": "images", "type": "IMAGE",
                              "link": None}], "widgets_values": ["muted"]})

    prompt = convert(workflow, server.object_info)
    assert prompt["8"]["inputs"]["latent_image"] == ["7", 0]
    assert prompt["8"]["inputs"]["seed"] == 1234
    assert prompt["8"]["inputs"]["steps"] == 20 and prompt["8"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert "52" not in prompt and "50" not in prompt and "51" not in prompt and "11" not in prompt  # 11: the Note
    assert prompt["3"]["inputs"] == {"image": REFERENCE}


def test_converter_names_missing_node_types(server):
    from ipadapter_cli.convert import ConversionError

    workflow = load_workflow("ipadapter_sd15_standard.json")
    workflow["nodes"][0]["type"] = "SomeUninstalledNode"
    with pytest.raises(ConversionError, match="SomeUninstalledNode"):
        convert(workflow, server.object_info)
