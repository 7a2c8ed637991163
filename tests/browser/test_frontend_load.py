"""The real ComfyUI frontend, driven by headless Chromium over the DevTools protocol, opens our workflows.

For every shipped workflow and for v1-era workflows (IPAdapterApply with noise, the v1 encoder that
shares the id ``IPAdapterEncoder``, batch embeds, masked tiles, a 3-item list from Nov 2023), the
page calls ``app.loadGraphData`` and we check: no missing-node report (neither the dialog nor a node
the graph could not create), and every node's serialized ``widgets_values`` equals the file's (after
the pack's extension migrated v1 layouts: the expected values come from the Python mirror of it).
A workflow with an unknown node type must show the report, so the check itself is tested. The shipped
set includes the Flux / SD3.5 examples, whose core nodes (UNETLoader, DualCLIPLoader, TripleCLIPLoader,
FluxGuidance, EmptySD3LatentImage, ConditioningZeroOut) must open like ours; ``test_dit_examples_are_shipped``
keeps them in the parametrisation.

Needs ComfyUI and a Chromium (Debian: ``apt-get install chromium``); skips with one line otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from ipadapter_cli.workflow import WORKFLOWS_DIR
from tests.host import v1_workflows as v1
from tests.host.example_workflows import DIT
from tests.host.server_fixtures import demo_server  # noqa: F401  (fixture)

aiohttp = pytest.importorskip("aiohttp")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1400,900"]
WORKFLOWS = sorted(p.name for p in WORKFLOWS_DIR.glob("*.json"))
pytestmark = pytest.mark.slow


def chromium_path() -> str | None:
    for name in (os.environ.get("IPAS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Page:
    """A minimal DevTools client: evaluate JavaScript in one page, awaiting promises."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def send(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=120)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def eval(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {json.dumps(result['exceptionDetails'])[:1500]}")
        return result["result"].get("value")


LOAD_JS = """(async () => {
  const data = %s;
  document.querySelectorAll('.p-dialog-mask').forEach((d) => d.remove());
  await window.app.loadGraphData(data, true, true, null);
  await new Promise((r) => setTimeout(r, 300));
  const text = document.body.innerText || '';
  return {
    dialog: !!document.querySelector('.comfy-missing-nodes') || text.includes('Some Nodes Are Missing'),
    broken: window.app.graph._nodes.filter((n) => n.has_errors).map((n) => n.last_serialization?.type ?? n.type),
    nodes: window.app.graph._nodes.map((n) => {
      const s = n.serialize();
      return {id: n.id, type: n.type, widgets_values: s.widgets_values ?? null};
    }),
  };
})()"""


async def _open(chromium: str, url: str, profile: str):
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    endpoint = None
    while endpoint is None and time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            endpoint = match.group(1)
        elif not line and proc.poll() is not None:
            break
    if endpoint is None:
        proc.kill()
        raise RuntimeError("Chromium did not start its DevTools endpoint")
    port = endpoint.split(":")[2].split("/")[0]
    session = aiohttp.ClientSession()
    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
        targets = await response.json()
    page_target = next(t for t in targets if t.get("type") == "page")
    ws = await session.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0)
    page = Page(ws)
    await page.send("Page.enable")
    await page.send("Page.navigate", url=url)
    ready = "!!(window.app && window.app.graph && window.LiteGraph && window.LiteGraph.registered_node_types" \
            " && window.LiteGraph.registered_node_types['IPAdapterApply'])"
    deadline = time.monotonic() + 180
    while not await _safe_eval(page, ready):
        if time.monotonic() > deadline:
            raise RuntimeError("the ComfyUI frontend did not finish loading (no IPAdapterApply node type)")
        await asyncio.sleep(1)
    return proc, session, page


async def _safe_eval(page: Page, expression: str):
    try:
        return await page.eval(expression)
    except RuntimeError:
        return False


def _close(loop, proc, session) -> None:
    if session is not None:
        loop.run_until_complete(session.close())
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(demo_server):  # noqa: F811
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("browser test skipped: no Chromium (apt-get install chromium, or set IPAS_CHROMIUM)")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    profile = tempfile.mkdtemp(prefix="ipas-chromium-")
    proc = session = None
    try:
        proc, session, page = loop.run_until_complete(_open(chromium, demo_server.url, profile))

        def load(workflow: dict) -> dict:
            return loop.run_until_complete(page.eval(LOAD_JS % json.dumps(workflow)))

        load.eval = lambda expression: loop.run_until_complete(page.eval(expression))
        yield load
    finally:
        _close(loop, proc, session)
        loop.close()
        shutil.rmtree(profile, ignore_errors=True)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_loaded(result: dict, expected: dict, label: str) -> None:
    assert not result["dialog"], f"{label}: the frontend reported missing nodes"
    assert not result["broken"], f"{label}: nodes the frontend could not create: {result['broken']}"
    by_id = {n["id"]: n for n in result["nodes"]}
    for node in expected["nodes"]:
        loaded = by_id.get(node["id"])
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
    check_loaded(browser(workflow), workflow, name)


V1_CASES = {
    "apply_noise": lambda: v1.apply_v1(),
    "apply_nov2023_3_items": lambda: v1.apply_v1([0.8, 0.0, "linear"]),
    "encoder_shared_id": lambda: v1.encoded_v1(),
    "batch_embeds": lambda: v1.encoded_v1(batch_embeds=True),
    "tiles_masked": lambda: v1.tiles_v1(),
}


@pytest.mark.parametrize("case", sorted(V1_CASES))
def test_v1_era_workflow_opens_with_its_values(browser, demo_server, case):  # noqa: F811
    workflow = v1.workflow(v1.from_object_info(demo_server.object_info), V1_CASES[case]())
    expected = copy.deepcopy(workflow)
    v1.migrate(expected)
    result = browser(workflow)
    check_loaded(result, expected, case)
    if case == "apply_nov2023_3_items":  # the rest of the list takes v1's defaults
        apply = next(n for n in result["nodes"] if n["type"] == "IPAdapterApply")
        assert _same(apply["widgets_values"], [0.8, 0.0, "linear", 0.0, 1.0, False])


def test_an_unknown_node_type_is_reported(browser):
    workflow = json.loads((WORKFLOWS_DIR / "ipadapter_sd15_standard.json").read_text(encoding="utf-8"))
    workflow["nodes"][0]["type"] = "SomeUninstalledNode"
    result = browser(workflow)
    assert result["dialog"] or result["broken"], "a missing node type went unnoticed: the check is blind"


NOTES_JS = """(async () => {
  window.app.graph.clear();
  const make = (type) => { const n = LiteGraph.createNode(type); window.app.graph.add(n); return n; };
  const faceid = make("IPAdapterFaceID");
  const before = faceid.serialize().widgets_values;
  faceid.onExecuted({text: ["WARNING: first", "second"]});
  faceid.onExecuted({text: ["WARNING: FaceID runs without its LoRA"]});
  const notes = faceid.widgets.filter((w) => w.name === "ipadapter_notes");
  const doctor = make("IPAdapterDoctor");
  doctor.onExecuted({text: ["IPAdapter Suite report"]});
  const other = make("KSampler");
  other.onExecuted?.({text: ["not ours"]});
  const prompt = await window.app.graphToPrompt();
  return {
    count: notes.length, value: notes[0]?.value ?? null, before, after: faceid.serialize().widgets_values,
    prompt_inputs: Object.keys(prompt.output[faceid.id]?.inputs ?? {}),
    doctor: doctor.widgets.find((w) => w.name === "ipadapter_notes")?.value ?? null,
    other: (other.widgets ?? []).some((w) => w.name === "ipadapter_notes"),
  };
})()"""


def test_node_notes_are_shown_and_never_saved(browser):
    """FaceID warnings and the Doctor's report (``ui.text``) appear under the node; workflow and prompt unchanged."""
    result = browser.eval(NOTES_JS)
    assert result["count"] == 1, "each execution must update one notes box, not add another"
    assert result["value"] == "WARNING: FaceID runs without its LoRA"
    assert result["doctor"] == "IPAdapter Suite report"
    assert not result["other"], "nodes of other packs must be left alone"
    assert result["after"] == result["before"], "the notes box leaked into the saved widgets_values"
    assert "ipadapter_notes" not in result["prompt_inputs"], "the notes box leaked into the prompt"
