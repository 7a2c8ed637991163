"""Help pages and the Chinese locale in the real frontends (issue 14, parts 3 and 4).

On every frontend of ``frontends.FRONTENDS`` (the host's bundled one and the newest package):

* the node-docs panel for IPAdapterAdvanced shows our page (``web/docs/IPAdapterAdvanced.md``): in 1.2x the
  node library's help page (the "?" of a node), in newer frontends the right side panel's Info tab of the
  selected node — both fetch ``/extensions/<pack>/docs/<id>/<locale>.md``, then ``<id>.md``;
* with ``Comfy.Locale`` set to ``zh``, the node search lists the Chinese display name, and a placed
  IPAdapterAdvanced node has the Chinese title, widget labels and socket labels of ``locales/zh``; the panel
  shows ``web/docs/IPAdapterAdvanced/zh.md``;
* in English, title and labels are the declared display name and input names (what the frontend shows without
  locale files), so nothing changes.

The locale is set back to English (and the panels closed) after each test: the page is shared by the tier.
"""

from __future__ import annotations

import json
import time

import pytest

from scripts.gen_common import LOCALES, WEB_DOCS
from tests.browser.devtools import READY_JS
from tests.browser.frontends import js

pytestmark = pytest.mark.slow
NODE = "IPAdapterAdvanced"
CATEGORY_NODES = {"IPAdapterTiled": "ipadapter/tiled", "IPAdapterApply": "ipadapter/v1 (legacy)"}  # main.json

# Shared helpers, prepended to each script: the app's Pinia, waiting, placing a node, its labels, the help page
# and the node search.
HELPERS = """
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (probe, ms) => {
    for (const end = Date.now() + ms; Date.now() < end; await wait(200)) { const v = await probe(); if (v) return v; }
    return probe();
  };
  const pinia = document.querySelector('#vue-app')?.__vue_app__?.config?.globalProperties?.$pinia;
  const registeredTitle = (type) => LiteGraph.registered_node_types[type]?.title;
  const place = (type) => {
    window.app.graph.clear();
    const node = LiteGraph.createNode(type);
    window.app.graph.add(node);
    return node;
  };
  const helpText = async (node, expect) => {
    // Newer frontends: the Info tab of the right side panel shows the selected node's help page.
    const panel = pinia._s.get('rightSidePanel');
    let how;
    if (panel) {
      window.app.canvas.deselectAll?.();
      window.app.canvas.selectNode(node);
      panel.openPanel('info');
      how = 'right side panel, Info tab';
    } else {
      // 1.2x: the node library's help page (what its "?" button opens).
      await window.app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library');
      await wait(500);
      pinia._s.get('nodeHelp').openHelp(pinia._s.get('nodeDef').nodeDefsByName[node.type]);
      how = 'node library help page';
    }
    const text = await until(() => {
      const t = document.querySelector('.node-help-content')?.innerText ?? '';
      return t.includes(expect) && t;
    }, 20000);
    const shown = text || (document.querySelector('.node-help-content')?.innerText ?? null);
    if (panel) { panel.closePanel(); } else {
      pinia._s.get('nodeHelp').closeHelp();
      await window.app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library');
    }
    return {how, text: shown};
  };
  const labels = (node) => ({
    title: node.title,
    widgets: Object.fromEntries((node.widgets ?? []).map((w) => [w.name, w.label ?? w.name])),
    inputs: Object.fromEntries((node.inputs ?? []).map((i) => [i.name, i.localized_name ?? i.label ?? i.name])),
    outputs: (node.outputs ?? []).map((o) => o.localized_name ?? o.label ?? o.name),
  });
  const search = async (query) => {
    // the node search box, as double-clicking the canvas opens it; typed into like a user
    const box = pinia._s.get('searchBox');
    if (!box.visible) box.toggleVisible();
    await wait(1000);  // the search box binds its input after it is shown
    const input = await until(() => document.querySelector('input[id^="comfy-vue-node-search-box-input"]')
      ?? [...document.querySelectorAll('.comfy-vue-node-search-container input, [role=dialog] input')]
        .find((i) => i.offsetParent !== null && !/template/i.test(i.placeholder ?? '')), 5000);
    if (!input) return null;
    input.focus();
    input.value = query;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await wait(1500);
    const text = document.querySelector('.comfy-vue-node-search-container, [role=dialog]')?.innerText ?? '';
    if (box.visible) box.toggleVisible();
    await wait(300);
    return text;
  };
"""

SCRIPT = "(async () => {" + HELPERS + "%(body)s })()"

ENGLISH_JS = """
  const ok = await until(() => registeredTitle(%(node)s) === %(title)s, 10000);
  const node = place(%(node)s);
  return {ok, labels: labels(node), results: await search('IPAdapter'), help: await helpText(node, %(expect)s)};
"""

CHINESE_JS = """
  const node = place(%(node)s);
  const out = {labels: labels(node), results: await search('IPAdapter'), help: await helpText(node, %(expect)s)};
  const defs = pinia._s.get('nodeDef').nodeDefsByName;
  out.categories = Object.fromEntries(%(category_nodes)s.map((n) => [n, defs[n]?.category]));
  window.app.graph.clear();
  return out;
"""


def _open_in(browser, locale: str, title: str) -> bool:
    """Set ``Comfy.Locale`` and reload the page, as a user whose ComfyUI is set to that language opens it;
    True once IPAdapterAdvanced is registered under ``title``.

    (Switching in place makes the frontend re-fetch the node definitions; in the newest frontend that refresh
    did not always run in this headless session, so the test opens the page in the language instead.)"""
    browser.eval(js("(async () => { await window.app.extensionManager.setting.set('Comfy.Locale', %(l)s); "
                    "return true; })()", l=locale))
    browser.eval("setTimeout(() => location.reload(), 100), true")
    time.sleep(2)
    probe = (f"(() => {{ try {{ return ({READY_JS}) && LiteGraph.registered_node_types[{json.dumps(NODE)}].title; }} "
             "catch (e) { return null; } })()")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if browser.eval(probe) == title:
                time.sleep(1)
                return True
        except RuntimeError:  # the page is between documents
            pass
        time.sleep(1)
    return False


def _script(body: str, **values) -> str:
    return js(SCRIPT.replace("%(body)s", body), node=NODE, **values)


def _first_sentence(path) -> str:
    """The first sentence of the page's introduction (the paragraph after the node id line)."""
    paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n")
                  if p and not p.startswith(("#", "**", "<!--"))]
    text = " ".join(paragraphs[0].split())
    end = min(i for i in (text.find(". "), text.find("。")) if i > 0)
    return text[: end + 1]


def _declared(browser) -> dict:
    return browser.server.object_info[NODE]


def test_help_panel_shows_our_page_in_english(browser):
    info = _declared(browser)
    expect = _first_sentence(WEB_DOCS / f"{NODE}.md")
    result = browser.eval(_script(ENGLISH_JS, title=info["display_name"], expect=expect))
    label = browser.label("node-docs panel (en)")
    assert result["ok"], f"{label}: IPAdapterAdvanced is not registered under its English name"
    help_text = result["help"]["text"] or ""
    assert expect in help_text, f"{label} via {result['help']['how']} shows:\n{help_text[:600]}"
    assert "Common mistakes" in help_text and "No IP-Adapter model reached this node." in help_text, label


def test_english_labels_are_unchanged(browser):
    """In English the node reads as declared: the display name, and every input by its own name."""
    info = _declared(browser)
    result = browser.eval(_script(ENGLISH_JS, title=info["display_name"], expect="IPAdapter"))
    label = browser.label("English labels")
    names = [*info["input"]["required"], *info["input"].get("optional", {})]
    seen = result["labels"]
    assert seen["title"] == info["display_name"] == "IPAdapter Advanced", label
    shown = {**seen["inputs"], **seen["widgets"]}
    assert {n: shown.get(n) for n in names} == {n: n for n in names}, f"{label}: {json.dumps(shown)}"
    assert seen["outputs"] == list(info["output_name"]), label
    assert result["results"] is not None and "IPAdapter Advanced" in result["results"], (
        f"{label}: the node search shows:\n{(result['results'] or '')[:600]}")


def test_chinese_locale_names_the_node_and_its_inputs_in_chinese(browser):
    info = _declared(browser)
    zh = json.loads((LOCALES / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))[NODE]
    expect = _first_sentence(WEB_DOCS / NODE / "zh.md")
    label = browser.label("Chinese locale")
    try:
        assert _open_in(browser, "zh", zh["display_name"]), (
            f"{label}: IPAdapterAdvanced was never registered as {zh['display_name']!r}")
        result = browser.eval(_script(CHINESE_JS, expect=expect, category_nodes=list(CATEGORY_NODES)))
    finally:
        restored = _open_in(browser, "en", info["display_name"])
    assert restored, f"{label}: the page did not come back in English"
    seen = result["labels"]
    assert seen["title"] == zh["display_name"], f"{label}: the placed node's title is {seen['title']!r}"
    expected = {name: value["name"] for name, value in zh["inputs"].items()}
    widgets = seen["widgets"]
    assert widgets == {n: expected[n] for n in widgets}, (
        f"{label}: widget labels {json.dumps(widgets, ensure_ascii=False)}")
    assert seen["inputs"] == {n: expected[n] for n in seen["inputs"]}, (
        f"{label}: socket labels {json.dumps(seen['inputs'], ensure_ascii=False)}")
    assert set(widgets) | set(seen["inputs"]) == set(expected), label
    assert result["results"] is not None and zh["display_name"] in result["results"], (
        f"{label}: the node search shows:\n{(result['results'] or '')[:600]}")
    help_text = result["help"]["text"] or ""
    assert expect in help_text, f"{label}: the panel ({result['help']['how']}) shows:\n{help_text[:600]}"
    segments = json.loads((LOCALES / "zh" / "main.json").read_text(encoding="utf-8"))["nodeCategories"]
    expected_categories = {n: "/".join(segments[s] for s in c.split("/")) for n, c in CATEGORY_NODES.items()}
    assert result["categories"] == expected_categories, f"{label}: categories {result['categories']}"
