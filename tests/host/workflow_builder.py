"""Writing UI-format workflows (frontend schema 0.4) from a compact description and the node classes.

Used to (re)generate the shipped examples in ``workflows/`` with their thumbnails
(``python -m tests.host.workflow_builder``, needs ComfyUI) and by the v1 tests to write v1-era
workflows. Sockets, widget order and defaults come from each class's ``INPUT_TYPES``, the way the
frontend lays a node out, so a description only names what differs from the defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = {"seed", "noise_seed"}


@dataclass
class N:
    """One node: id, type, position, widget values by name (or a raw ``widgets_values`` list), title."""

    id: int
    type: str
    pos: tuple[int, int]
    values: dict[str, Any] | list = field(default_factory=dict)
    title: str | None = None
    models: list[dict] | None = None
    size: tuple[int, int] = (315, 130)


def _is_widget(spec: Any) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def _default(spec: Any) -> Any:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in options:
        return options["default"]
    if isinstance(kind, (list, tuple)):
        return kind[0] if kind else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def layout(cls: type) -> tuple[list[tuple[str, str]], list[tuple[str, Any, dict]], list[tuple[str, str]]]:
    """(sockets [(name, type)], widgets [(name, spec, options)], outputs [(name, type)]) of a node class."""
    info = cls.INPUT_TYPES()
    sockets, widgets = [], []
    for section in ("required", "optional"):
        for name, spec in (info.get(section) or {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if _is_widget(spec):
                widgets.append((name, spec, options))
            else:
                sockets.append((name, spec[0]))
    types = list(getattr(cls, "RETURN_TYPES", ()))
    names = list(getattr(cls, "RETURN_NAMES", None) or types)
    return sockets, widgets, [(n, t if isinstance(t, str) else "COMBO") for n, t in zip(names, types, strict=True)]


def widgets_values(cls: type, values: dict[str, Any] | list) -> list:
    """The saved list: widget values in order, plus the frontend's control/upload entries."""
    if isinstance(values, list):
        return list(values)
    out = []
    _, widgets, _ = layout(cls)
    unknown = set(values) - {name for name, _, _ in widgets}
    if unknown:
        raise KeyError(f"{cls.__name__} has no widgets {sorted(unknown)}")
    for name, spec, options in widgets:
        out.append(values.get(name, _default(spec)))
        if options.get("control_after_generate") or (spec[0] == "INT" and name in SEED_NAMES):
            out.append("fixed")
        if options.get("image_upload"):
            out.append("image")
    return out


def build(classes: dict[str, type], nodes: list[N], links: list[tuple[int, int | str, int, str]],
          workflow_id: str, groups: list[dict] | None = None) -> dict:
    """A UI workflow. ``links``: (origin id, output slot or name, target id, input name)."""
    by_id = {n.id: n for n in nodes}
    ui_nodes: dict[int, dict] = {}
    for order, n in enumerate(nodes):
        cls = classes.get(n.type)
        if cls is None:  # frontend-only nodes (Note)
            ui_nodes[n.id] = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {},
                              "order": order, "mode": 0, "properties": {}, "widgets_values": list(n.values)}
            continue
        sockets, _, outputs = layout(cls)
        node = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {}, "order": order,
                "mode": 0, "inputs": [{"name": name, "type": t, "link": None} for name, t in sockets],
                "outputs": [{"name": name, "type": t, "links": [], "slot_index": i}
                            for i, (name, t) in enumerate(outputs)],
                "properties": {"Node name for S&R": n.type}}
        if not node["inputs"]:
            del node["inputs"]
        if n.models:
            node["properties"]["models"] = n.models
        wv = widgets_values(cls, n.values)
        if wv:
            node["widgets_values"] = wv
        if n.title:
            node["title"] = n.title
        ui_nodes[n.id] = node
    ui_links = []
    for link_id, (src, slot, dst, name) in enumerate(links, start=1):
        outputs = ui_nodes[src]["outputs"]
        index = slot if isinstance(slot, int) else next(i for i, o in enumerate(outputs) if o["name"] == slot)
        inputs = ui_nodes[dst].setdefault("inputs", [])
        target = next((i for i, s in enumerate(inputs) if s["name"] == name), None)
        if target is None:  # a widget driven by a link: the frontend saves it as an input with "widget"
            _, widgets, _ = layout(classes[by_id[dst].type])
            spec = next(spec for w, spec, _ in widgets if w == name)
            kind = spec[0] if isinstance(spec[0], str) else "COMBO"
            inputs.append({"name": name, "type": kind, "link": None, "widget": {"name": name}})
            target = len(inputs) - 1
        outputs[index]["links"].append(link_id)
        inputs[target]["link"] = link_id
        ui_links.append([link_id, src, index, dst, target, outputs[index]["type"]])
    for node in ui_nodes.values():
        for output in node.get("outputs", []):
            if not output["links"]:
                output["links"] = None
    return {"id": workflow_id, "revision": 0, "last_node_id": max(by_id), "last_link_id": len(ui_links),
            "nodes": [ui_nodes[n.id] for n in nodes], "links": ui_links, "groups": groups or [], "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4}


def save(workflow: dict, path: Path) -> None:
    path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")


# --- thumbnails: the graph drawn as boxes and wires, coloured by role ------------------------------------

COLOURS = {"IPAdapter": (92, 74, 160), "Load": (44, 98, 132), "KSampler": (150, 70, 60), "Save": (46, 120, 72)}


def _colour(node_type: str) -> tuple[int, int, int]:
    for prefix, colour in COLOURS.items():
        if node_type.startswith(prefix) or prefix in node_type:
            return colour
    return (70, 70, 78)


def thumbnail(workflow: dict, path: Path, size: tuple[int, int] = (320, 200)) -> None:
    """A small JPEG of the graph: every node a box at its position, links as lines, the title on top."""
    from PIL import Image, ImageDraw

    nodes = [n for n in workflow["nodes"] if n["type"] != "Note"]
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    w, h = size
    scale = min((w - 16) / (x1 - x0), (h - 36) / (y1 - y0))

    def at(x: float, y: float) -> tuple[float, float]:
        return 8 + (x - x0) * scale, 28 + (y - y0) * scale

    image = Image.new("RGB", size, (24, 24, 28))
    draw = ImageDraw.Draw(image)
    by_id = {n["id"]: n for n in nodes}
    for _, src, _, dst, _, _ in workflow["links"]:
        if src in by_id and dst in by_id:
            a, b = by_id[src], by_id[dst]
            draw.line([at(a["pos"][0] + a["size"][0], a["pos"][1] + 20), at(b["pos"][0], b["pos"][1] + 20)],
                      fill=(150, 150, 160), width=1)
    for n in nodes:
        left, top = at(*n["pos"])
        right, bottom = at(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        draw.rectangle([left, top, right, bottom], fill=_colour(n["type"]), outline=(200, 200, 210))
    title = path.stem.replace("_", " ")
    draw.text((8, 8), title, fill=(235, 235, 240))
    image.save(path, "JPEG", quality=85)
