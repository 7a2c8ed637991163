"""Every shipped workflow (``workflows/*.json``) converts with our converter and runs on the real server.

The shared demo server (server_fixtures.py: full-size random-weight SD1.5, CPU) runs each one at
64 px and 2 steps. The workflows are also checked as templates: served by GET /api/workflow_templates,
each with a thumbnail, loaders carrying ``properties.models`` download hints.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ipadapter_cli.server import PACK_LINK
from ipadapter_cli.workflow import WORKFLOWS_DIR
from tests.host.example_workflows import EMBEDS_FILE
from tests.host.server_fixtures import demo_server, prepared, run_images  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

WORKFLOWS = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))
LOADERS_WITH_FILE = {"CheckpointLoaderSimple": "ckpt_name", "IPAdapterModelLoader": "ipadapter_file",
                     "CLIPVisionLoader": "clip_name", "LoraLoaderModelOnly": "lora_name"}
UNIFIED_LOADERS = {"IPAdapterUnifiedLoader", "IPAdapterUnifiedLoaderFaceID", "IPAdapterUnifiedLoaderCommunity"}
FACEID_DEMO_FILE = "ip-adapter-faceid_sd15.bin"


def _load(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / name).read_text(encoding="utf-8"))


def test_the_issue_list_of_examples_is_shipped():
    stems = {name[:-5] for name in WORKFLOWS}
    for wanted in ("ipadapter_sd15_standard", "ipadapter_sd15_plus", "style_transfer_sd15", "style_composition_sd15",
                   "regional_masks_sd15", "batch_schedule_sd15", "embeds_save_sd15", "embeds_load_sd15",
                   "tiled_sd15"):
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
            index = 0  # each of these loaders' file is its first widget
            assert hints, f"{name}: {node['type']} #{node['id']} has no properties.models"
            assert node["widgets_values"][index] in {h["name"] for h in hints}, (name, node["id"], hints)
        elif node["type"] in UNIFIED_LOADERS:
            assert hints, f"{name}: {node['type']} #{node['id']} has no properties.models"
        for hint in hints or []:
            assert set(hint) == {"name", "url", "directory"} and hint["url"].startswith("https://"), hint


def test_templates_endpoint_serves_every_workflow(demo_server):  # noqa: F811
    templates = demo_server.client.get_json("/api/workflow_templates")
    assert set(templates.get(PACK_LINK, [])) == {name[:-5] for name in WORKFLOWS}, templates
    for name in WORKFLOWS:
        served = demo_server.client.get_json(f"/api/workflow_templates/{PACK_LINK}/{name}")
        assert served == _load(name)


def _needs_faceid_models(server, workflow: dict) -> str | None:
    if not any(n["type"].startswith("IPAdapterUnifiedLoaderFaceID") or "FaceID" in n["type"]
               for n in workflow["nodes"]):
        return None
    files = server.object_info["IPAdapterModelLoader"]["input"]["required"]["ipadapter_file"][0]
    if FACEID_DEMO_FILE not in files:
        return "the demo model set has no FaceID adapter / InsightFace pack (FaceID runs: tests/host/test_faceid.py)"
    return None


def _provide_saved_embeds(server) -> None:
    """Run the save example once and put its file in the input folder under the name the load example picks."""
    if (server.input_dir / EMBEDS_FILE).exists():
        return
    run_images(server, prepared(server, _load("embeds_save_sd15.json")), "embeds_save_for_load")
    saved = sorted(server.output_dir.glob("IP_embeds_*"), key=lambda p: p.stat().st_mtime)
    assert saved, f"the save example wrote no embeds file into {server.output_dir}"
    shutil.copyfile(saved[-1], server.input_dir / EMBEDS_FILE)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_on_cpu_with_demo_models(demo_server, name):  # noqa: F811
    workflow = _load(name)
    reason = _needs_faceid_models(demo_server, workflow)
    if reason:
        pytest.skip(reason)
    if name == "embeds_load_sd15.json":
        _provide_saved_embeds(demo_server)
    prompt = prepared(demo_server, workflow)
    assert not [k for k, v in prompt.items() if v["class_type"] in ("Note", "MarkdownNote")]
    images = run_images(demo_server, prompt, name[:-5])
    latent = next(v for v in prompt.values() if v["class_type"] == "EmptyLatentImage")["inputs"]
    assert len(images) == latent["batch_size"], f"{name}: {len(images)} images for a batch of {latent['batch_size']}"
    for image in images:
        assert image.shape == (64, 64, 3)
        assert image.std() > 1.0, f"{name}: the decoded image is flat"
