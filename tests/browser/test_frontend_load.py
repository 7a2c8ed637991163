"""The real ComfyUI frontends, driven by headless Chromium over the DevTools protocol, open our workflows.

Every test runs on each frontend of ``frontends.FRONTENDS``: the host's bundled one and the newest
``comfyui-frontend-package`` (unpacked by scripts/setup_frontend.sh, served with ``--front-end-root``).
For every shipped workflow and for v1-era workflows (IPAdapterApply with noise, the v1 encoder that
shares the id ``IPAdapterEncoder``, batch embeds, masked tiles, a 3-item list from Nov 2023, v1 nodes
inside a subgraph definition), the page calls ``app.loadGraphData`` and we check: no missing-node report
(neither the dialog / issue list nor a node the graph could not create), and every node's serialized
``widgets_values`` equals the file's (after the pack's extension migrated v1 layouts: the expected values
come from the Python mirror of it). A workflow with an unknown node type must be reported, so the check
itself is tested. The shipped set includes the Flux / SD3.5 examples, whose core nodes (UNETLoader,
DualCLIPLoader, TripleCLIPLoader, FluxGuidance, EmptySD3LatentImage, ConditioningZeroOut) must open like
ours; ``test_dit_examples_are_shipped`` keeps them in the parametrisation.

Needs ComfyUI and a Chromium (Debian: ``apt-get install chromium``); skips with one line otherwise.
"""

from __future__ import annotations

import copy
import json

import pytest

from ipadapter_cli.workflow import WORKFLOWS_DIR
from tests.browser.frontends import js
from tests.host import v1_workflows as v1
from tests.host.example_workflows import DIT
from tests.host.workflow_builder import N

WORKFLOWS = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))
pytestmark = pytest.mark.slow

# What the frontend made of the opened workflow. A missing node type is reported by the "Some Nodes Are
# Missing" dialog (1.2x) or, in newer frontends, by the issue overlay whose "Missing Node Packs" list is
# the `missingNodesError` store (read through the app's Pinia). A node that could not be created is a
# placeholder whose type is not registered (`has_errors` alone also marks missing models/inputs there).
LOAD_JS = """(async () => {
  const data = %(workflow)s;
  document.querySelectorAll('.p-dialog-mask').forEach((d) => d.remove());
  await window.app.loadGraphData(data, true, true, null);
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  await wait(300);
  const registered = window.LiteGraph.registered_node_types;
  const broken = window.app.graph._nodes
    .filter((n) => !(registered[n.type] || n.isSubgraphNode?.()) || (n.has_errors && n.last_serialization))
    .map((n) => n.last_serialization?.type ?? n.type);
  const pinia = document.querySelector('#vue-app')?.__vue_app__?.config?.globalProperties?.$pinia;
  const store = pinia?._s?.get('missingNodesError');
  const dialog = () => !!document.querySelector('.comfy-missing-nodes')
    || (document.body.innerText || '').includes('Some Nodes Are Missing');
  const missing = () => (store
    ? (store.missingNodesError?.nodeTypes ?? []).map((t) => (typeof t === 'string' ? t : t.type)) : null);
  // a placeholder node: give the report up to 5 s to appear (it is raised asynchronously)
  const end = Date.now() + 5000;
  while (broken.length && !dialog() && !missing()?.length && Date.now() < end) await wait(100);
  return {
    dialog: dialog(), missing: missing(), broken,
    nodes: window.app.graph._nodes.map((n) => {
      const s = n.serialize();
      return {id: n.id, type: n.type, widgets_values: s.widgets_values ?? null};
    }),
  };
})()"""


def load(browser, workflow: dict) -> dict:
    return browser.eval(js(LOAD_JS, workflow=workflow))


def reported(result: dict) -> list[str] | bool:
    """The missing node types the frontend told the user about (the old dialog: True)."""
    return result["missing"] or result["dialog"]


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_loaded(result: dict, expected: dict, label: str) -> None:
    assert not reported(result), f"{label}: the frontend reported missing nodes: {reported(result)}"
    assert not result["broken"], f"{label}: nodes the frontend could not create: {result['broken']}"
    by_id = {str(n["id"]): n for n in result["nodes"]}  # 1.5x graphs hold ids as strings
    for node in expected["nodes"]:
        loaded = by_id.get(str(node["id"]))
        assert loaded is not None, f"{label}: node {node['id']} ({node['type']}) is not in the graph"
        assert loaded["type"] == node["type"], (label, node["id"], loaded["type"], node["type"])
        saved = node.get("widgets_values") or []
        got = loaded["widgets_values"] or []
        assert _same(got[:len(saved)], saved), f"{label}: {node['type']} #{node['id']}: {got} != file {saved}"


def test_dit_examples_are_shipped():
    """The glob above is what puts the transformer examples under the browser check: fail if one goes missing."""
    assert {f"{stem}.json" for stem in DIT} <= set(WORKFLOWS), sorted(WORKFLOWS)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_workflow_opens_with_its_values(browser, name):
    workflow = json.loads((WORKFLOWS_DIR / name).read_text(encoding="utf-8"))
    check_loaded(load(browser, workflow), workflow, browser.label(name))


V1_CASES = {
    "apply_noise": lambda: v1.apply_v1(),
    "apply_nov2023_3_items": lambda: v1.apply_v1([0.8, 0.0, "linear"]),
    "encoder_shared_id": lambda: v1.encoded_v1(),
    "batch_embeds": lambda: v1.encoded_v1(batch_embeds=True),
    "tiles_masked": lambda: v1.tiles_v1(),
}


@pytest.mark.parametrize("case", sorted(V1_CASES))
def test_v1_era_workflow_opens_with_its_values(browser, case):
    workflow = v1.workflow(v1.from_object_info(browser.server.object_info), V1_CASES[case]())
    expected = copy.deepcopy(workflow)
    v1.migrate(expected)
    result = load(browser, workflow)
    check_loaded(result, expected, browser.label(case))
    if case == "apply_nov2023_3_items":  # the rest of the list takes v1's defaults
        apply = next(n for n in result["nodes"] if n["type"] == "IPAdapterApply")
        assert _same(apply["widgets_values"], [0.8, 0.0, "linear", 0.0, 1.0, False])


def test_an_unknown_node_type_is_reported(browser):
    workflow = json.loads((WORKFLOWS_DIR / "ipadapter_sd15_standard.json").read_text(encoding="utf-8"))
    workflow["nodes"][0]["type"] = "SomeUninstalledNode"
    result = load(browser, workflow)
    label = browser.label("unknown node")
    assert result["broken"] == ["SomeUninstalledNode"], f"{label}: placeholder nodes: {result['broken']}"
    assert result["dialog"] or "SomeUninstalledNode" in (result["missing"] or []), \
        f"{label}: the frontend did not report the missing node type (dialog or missing-node list): the check is blind"


SUBGRAPH_ID = "1f0c3a52-7d5e-4c1b-9a43-5b2f0d8e6a10"


def subgraph_workflow(object_info: dict) -> tuple[dict, list[dict]]:
    """A workflow whose one node is a subgraph holding a v1 encoder and a 4-item PrepImageForClipVision.

    The Prep node also carries a ``widgets_values_named`` map in its old layout: the extension must drop it,
    or a frontend restoring by name would put the torch name "bicubic" back. Returns (workflow, inner nodes).
    """
    classes = v1.from_object_info(object_info)
    inner = v1.workflow(classes, ([N(13, "IPAdapterEncoder", (100, 100), list(v1.V1_ENCODER_VALUES)),
                                   N(14, "PrepImageForClipVision", (100, 400), ["bicubic", "top", 0.25, True])],
                                  []), 91)["nodes"]
    inner[1]["widgets_values_named"] = {"interpolation": "bicubic", "crop_position": "top", "sharpening": 0.25}
    definition = {"id": SUBGRAPH_ID, "version": 1, "revision": 0, "name": "v1 nodes", "config": {}, "extra": {},
                  "state": {"lastGroupId": 0, "lastNodeId": 14, "lastLinkId": 0, "lastRerouteId": 0},
                  "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]},
                  "outputNode": {"id": -20, "bounding": [600, 0, 120, 60]},
                  "inputs": [], "outputs": [], "widgets": [], "nodes": inner, "groups": [], "links": []}
    instance = {"id": 20, "type": SUBGRAPH_ID, "pos": [200, 200], "size": [240, 60], "flags": {}, "order": 0,
                "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": []}
    workflow = {"id": "00000000-0000-4000-8000-000000000092", "revision": 0, "last_node_id": 20, "last_link_id": 0,
                "nodes": [instance], "links": [], "groups": [], "definitions": {"subgraphs": [definition]},
                "config": {}, "extra": {}, "version": 0.4}
    return workflow, inner


SUBGRAPH_NODES_JS = """(() => [...(window.app.graph.subgraphs?.values() ?? [])].map((sg) => ({
  id: sg.id,
  nodes: (sg.nodes ?? sg._nodes).map((n) => {
    const s = n.serialize();
    return {id: s.id, type: s.type, widgets_values: s.widgets_values ?? null};
  }),
})))()"""


def test_v1_nodes_inside_a_subgraph_are_migrated(browser):
    workflow, inner = subgraph_workflow(browser.server.object_info)
    expected = {"nodes": copy.deepcopy(inner)}
    v1.migrate(expected)
    label = browser.label("v1 nodes in a subgraph")
    # Frontends with LiteGraph.namedValuesRestore (setting Comfy.Workflow.NamedValuesRestore, off by default)
    # restore widgets by name from widgets_values_named: on for this load, so that a stale map would show.
    was = browser.eval("window.LiteGraph.namedValuesRestore")
    if was is not None:
        browser.eval("window.LiteGraph.namedValuesRestore = true")
    try:
        result = load(browser, workflow)
        subgraphs = browser.eval(SUBGRAPH_NODES_JS)
    finally:
        if was is not None:
            browser.eval(f"window.LiteGraph.namedValuesRestore = {json.dumps(was)}")
    assert not reported(result) and not result["broken"], f"{label}: {reported(result)} {result['broken']}"
    assert [sg["id"] for sg in subgraphs] == [SUBGRAPH_ID], f"{label}: subgraphs in the graph: {subgraphs}"
    check_loaded({**result, "nodes": subgraphs[0]["nodes"]}, expected, label)
    assert [n["type"] for n in expected["nodes"]] == ["IPAdapterEncoderV1", "PrepImageForClipVision"]
    assert expected["nodes"][1]["widgets_values"][0] == "BICUBIC"
