"""Every shipped workflow (``workflows/*.json``) converts with our converter and runs on the real server.

The shared demo server (server_fixtures.py: full-size random-weight SD1.5, CPU) runs each SD1.5 one at
64 px and 2 steps. The Flux / SD3.5 examples (``example_workflows.DIT``) need multi-GB text encoders no
demo model replaces, so they are checked against the server's node definitions instead: every node
known, every choice among its options, model files matching their download hints. FaceID workflows
load the demo face pictures and use the demo FaceID adapters, their paired LoRAs and the synthetic
InsightFace pack (tests/fixtures/face_models.py); their face crops are checked against the drawn faces.
The workflows are also checked as templates: served by GET /api/workflow_templates, each with a
thumbnail, loaders carrying ``properties.models`` download hints (for the unified loader: the preset's
own adapter and encoder file names, so a downloaded file is found).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ipadapter_cli import edit
from ipadapter_cli.convert import convert
from ipadapter_cli.server import PACK_LINK
from ipadapter_cli.workflow import WORKFLOWS_DIR
from ipadapter_core import config
from ipadapter_core.presets import find_file
from tests.fixtures.demo_models import FACE_IMAGES
from tests.host.example_workflows import DIT, EMBEDS_FILE
from tests.host.server_fixtures import demo_server, entry_images, prepared, run_entry, run_images  # noqa: F401

pytestmark = pytest.mark.slow

WORKFLOWS = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))
DIT_WORKFLOWS = [name for name in WORKFLOWS if name[:-5] in DIT]
SD_WORKFLOWS = [name for name in WORKFLOWS if name not in DIT_WORKFLOWS]
# Loaders whose first N widgets are model file names (each must be among the node's download hints).
LOADERS_WITH_FILE = {"CheckpointLoaderSimple": 1, "IPAdapterModelLoader": 1, "CLIPVisionLoader": 1,
                     "LoraLoaderModelOnly": 1, "UNETLoader": 1, "VAELoader": 1, "DualCLIPLoader": 2,
                     "TripleCLIPLoader": 3}
UNIFIED_LOADERS = {"IPAdapterUnifiedLoader", "IPAdapterUnifiedLoaderFaceID", "IPAdapterUnifiedLoaderCommunity"}
# FaceID preset -> the demo LoRA file it must pair with (each is an exact copy of its adapter's embedded LoRA).
FACEID_PRESET_LORAS = {"FACEID": "ip-adapter-faceid_sd15_lora.safetensors",
                       "FACEID PLUS V2": "ip-adapter-faceid-plusv2_sd15_lora.safetensors"}
FACE_CROP = 224


def _load(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / name).read_text(encoding="utf-8"))


def test_the_issue_list_of_examples_is_shipped():
    stems = {name[:-5] for name in WORKFLOWS}
    for wanted in ("ipadapter_sd15_standard", "ipadapter_sd15_plus", "style_transfer_sd15", "style_composition_sd15",
                   "regional_masks_sd15", "batch_schedule_sd15", "embeds_save_sd15", "embeds_load_sd15",
                   "tiled_sd15", *DIT):
        assert wanted in stems


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_has_thumbnail_and_download_hints(name):
    thumb = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    assert thumb.is_file() and 0 < thumb.stat().st_size < 100_000, f"{thumb.name}: missing or too big"
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb.name} is not a JPEG"
    workflow = _load(name)
    assert workflow.get("version") == 0.4 and workflow["nodes"] and workflow["links"]
    for node in workflow["nodes"]:
        hints = node.get("properties", {}).get("models")
        if node["type"] in LOADERS_WITH_FILE:
            assert hints, f"{name}: {node['type']} #{node['id']} has no properties.models"
            for value in node["widgets_values"][:LOADERS_WITH_FILE[node["type"]]]:
                assert value in {h["name"] for h in hints}, (name, node["id"], value, hints)
        elif node["type"] in UNIFIED_LOADERS:
            assert hints, f"{name}: {node['type']} #{node['id']} has no properties.models"
        if node["type"] == "IPAdapterUnifiedLoader":
            _check_preset_hints(name, node["widgets_values"][0], hints)
        for hint in hints or []:
            assert set(hint) == {"name", "url", "directory"} and hint["url"].startswith("https://"), hint


def _check_preset_hints(name: str, preset: str, hints: list[dict]) -> None:
    """The hinted adapter and encoder are what the preset looks for (for one of its base families): a user who
    downloads them through the hints gets files the unified loader finds, from the URLs the README gives."""
    by_folder = {h["directory"]: h for h in hints}
    assert set(by_folder) == {"ipadapter", "clip_vision"}, (name, hints)
    adapter, encoder = by_folder["ipadapter"], by_folder["clip_vision"]
    rows = [row for row in config.presets()[preset].values() if "file" in row]
    fitting = [row for row in rows if find_file([adapter["name"]], row["patterns"]) == adapter["name"]
               and find_file([encoder["name"]], [config.encoders()[row["encoder"]]["pattern"]]) == encoder["name"]]
    assert fitting, f"{name}: the hints {adapter['name']} + {encoder['name']} are not what '{preset}' looks for"
    row = fitting[0]
    assert (adapter["name"], adapter["url"]) == (row["file"], row["url"]), (name, adapter, row)
    expected_encoder = config.encoders()[row["encoder"]]
    assert (encoder["name"], encoder["url"]) == (expected_encoder["file"], expected_encoder["url"]), (name, encoder)


def test_templates_endpoint_serves_every_workflow(demo_server):  # noqa: F811
    templates = demo_server.client.get_json("/api/workflow_templates")
    assert set(templates.get(PACK_LINK, [])) == {name[:-5] for name in WORKFLOWS}, templates
    for name in WORKFLOWS:
        served = demo_server.client.get_json(f"/api/workflow_templates/{PACK_LINK}/{name}")
        assert served == _load(name)


def _is_faceid(workflow: dict) -> bool:
    return any("FaceID" in n["type"] for n in workflow["nodes"])


def _use_face_pictures(workflow: dict, prompt: dict) -> list[str]:
    """Point the i-th LoadImage of a FaceID workflow at demo face picture i (``prepared`` gave every LoadImage
    the generic reference picture); returns the picture names in node order."""
    loads = sorted((n for n in workflow["nodes"] if n["type"] == "LoadImage"), key=lambda n: n["id"])
    names = []
    for i, node in enumerate(loads):
        name = FACE_IMAGES[i % len(FACE_IMAGES)]
        assert edit.apply_override(prompt, f"{node['id']}.image={name}") == [str(node["id"])]
        names.append(name)
    return names


def _only(prompt: dict, class_type: str) -> str:
    ids = edit.find(prompt, class_type)
    assert len(ids) == 1, f"expected one {class_type}, found {ids}"
    return ids[0]


def _aligned_face(server, name: str) -> np.ndarray:
    """The crop the synthetic detector should produce: the picture's central half (its face box), resized."""
    from PIL import Image

    with Image.open(server.input_dir / name) as img:
        w, h = img.size
        box = img.convert("RGB").crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))
        return np.asarray(box.resize((FACE_CROP, FACE_CROP), Image.BILINEAR)).astype(np.float32)


def _check_faceid_run(server, prompt: dict, entry: dict, faces: list[str]) -> None:
    """The FaceID loader found InsightFace (and paired the right LoRA); each face picture gave its aligned crop."""
    loader = _only(prompt, "IPAdapterUnifiedLoaderFaceID")
    notes = "\n".join((entry["outputs"].get(loader) or {}).get("text") or [])
    assert "InsightFace 'buffalo_l' runs on CPUExecutionProvider" in notes, notes
    preset = prompt[loader]["inputs"]["preset"]
    if preset in FACEID_PRESET_LORAS:
        assert f"Applied LoRA {FACEID_PRESET_LORAS[preset]} at strength" in notes, notes
    else:
        assert "LoRA" not in notes, notes
    crops = entry_images(server, entry, "temp", node=_only(prompt, "PreviewImage"))
    assert len(crops) == len(faces), f"{len(crops)} face crops for {len(faces)} face pictures"
    for crop, name in zip(crops, faces, strict=True):
        assert crop.shape == (FACE_CROP, FACE_CROP, 3)
        errors = {other: float(np.abs(crop - _aligned_face(server, other)).mean()) for other in set(faces)}
        assert errors[name] < 4.0 and errors[name] == min(errors.values()), (name, errors)


def _provide_saved_embeds(server) -> None:
    """Run the save example once, as a user does before opening the load example (no file copied by hand)."""
    written = server.output_dir / EMBEDS_FILE.removesuffix(" [output]")
    if written.exists():
        return
    run_images(server, prepared(server, _load("embeds_save_sd15.json")), "embeds_save_for_load")
    assert written.exists(), (f"the save example did not write {written.name} into {server.output_dir}, the file "
                              "the load example picks")


@pytest.mark.parametrize("name", SD_WORKFLOWS)
def test_workflow_runs_on_cpu_with_demo_models(demo_server, name):  # noqa: F811
    workflow = _load(name)
    if name == "embeds_load_sd15.json":
        _provide_saved_embeds(demo_server)
    prompt = prepared(demo_server, workflow)
    assert not [k for k, v in prompt.items() if v["class_type"] in ("Note", "MarkdownNote")]
    faces = _use_face_pictures(workflow, prompt) if _is_faceid(workflow) else []
    entry = run_entry(demo_server, prompt, name[:-5])
    if faces:
        _check_faceid_run(demo_server, prompt, entry, faces)
    images = entry_images(demo_server, entry)
    latent = next(v for v in prompt.values() if v["class_type"] == "EmptyLatentImage")["inputs"]
    assert len(images) == latent["batch_size"], f"{name}: {len(images)} images for a batch of {latent['batch_size']}"
    for image in images:
        assert image.shape == (64, 64, 3)
        assert image.std() > 1.0, f"{name}: the decoded image is flat"


def _combo_options(spec) -> list | None:
    """The choices of an ``/object_info`` combo input (old ``[[...]]`` and new ``["COMBO", {"options"}]`` forms)."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return (spec[1] if len(spec) > 1 else {}).get("options")
    return None


def _source(prompt: dict, node_id: str, input_name: str) -> str:
    value = prompt[node_id]["inputs"][input_name]
    assert isinstance(value, list), f"{prompt[node_id]['class_type']}.{input_name} is not connected"
    return prompt[value[0]]["class_type"]


@pytest.mark.parametrize("name", DIT_WORKFLOWS)
def test_transformer_workflow_matches_the_node_definitions(demo_server, name):  # noqa: F811
    """Every node exists on the real server, every widget value is allowed there (model files: the hinted names),
    the sampler's model passes through IPAdapter Advanced with the only settings transformer adapters take."""
    workflow = _load(name)
    prompt = convert(workflow, demo_server.object_info)
    hints = {str(n["id"]): {h["name"] for h in n.get("properties", {}).get("models") or []} for n in workflow["nodes"]}
    for node_id, node in prompt.items():
        info = demo_server.object_info[node["class_type"]]["input"]
        specs = {**info.get("required", {}), **info.get("optional", {})}
        files = LOADERS_WITH_FILE.get(node["class_type"], 0)
        file_inputs = [k for k in specs if _combo_options(specs[k]) is not None][:files]
        for key, value in node["inputs"].items():
            if isinstance(value, list):
                continue
            spec = specs[key]
            options = _combo_options(spec)
            if key in file_inputs:
                assert value in hints[node_id], f"{name}: {node['class_type']}.{key}={value!r} has no download hint"
            elif options is not None:
                assert value in options, f"{name}: {node['class_type']}.{key}={value!r} is not one of {options}"
            elif spec[0] in ("INT", "FLOAT") and len(spec) > 1:
                limits = spec[1]
                assert limits.get("min", value) <= value <= limits.get("max", value), (name, node_id, key, value)
    sampler = _only(prompt, "KSampler")
    apply = prompt[sampler]["inputs"]["model"][0]
    assert prompt[apply]["class_type"] == "IPAdapterAdvanced"
    assert (prompt[apply]["inputs"]["weight_type"], prompt[apply]["inputs"]["embeds_scaling"]) == ("linear", "V only")
    assert _source(prompt, apply, "ipadapter") == "IPAdapterUnifiedLoader"
    loader = prompt[apply]["inputs"]["model"][0]
    assert prompt[loader]["class_type"] == "IPAdapterUnifiedLoader"
    assert _source(prompt, loader, "model") == "UNETLoader"
    assert _source(prompt, apply, "image") == "LoadImage"
