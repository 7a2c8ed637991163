"""UI-format workflows (what the frontend saves) to API-format prompts (what ``POST /prompt`` takes).

Driven by the server's ``/object_info``: each node's inputs are walked in ``input_order`` (required,
then optional). A widget input takes the next entry of ``widgets_values``; a socket input takes its
link, resolved through Reroute nodes, bypassed nodes (mode 4) and PrimitiveNodes. Muted (mode 2) and
bypassed nodes are left out, as the frontend does; frontend-only nodes (Note, Reroute ...) too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .migrate import migrate
from .replacements import Replacement, replacement_for

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SEED_NAMES = {"seed", "noise_seed"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
UPLOAD_VALUES = {"image", "video", "audio", "animated_image"}
FRONTEND_ONLY = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
MODE_MUTED, MODE_BYPASS = 2, 4


class ConversionError(ValueError):
    """The workflow cannot be turned into a prompt (unknown node types, subgraphs, bad links)."""


@dataclass(frozen=True)
class Link:
    origin: int
    origin_slot: int
    target: int
    target_slot: int
    type: str


def is_api_format(workflow: dict) -> bool:
    """True for ``{id: {"class_type", "inputs"}}`` prompts, False for UI workflows (``nodes`` + ``links``)."""
    if isinstance(workflow.get("nodes"), list):
        return False
    return bool(workflow) and all(isinstance(v, dict) and "class_type" in v for v in workflow.values())


def _links(workflow: dict) -> dict[int, Link]:
    out: dict[int, Link] = {}
    for raw in workflow.get("links") or []:
        if isinstance(raw, dict):  # schema 1: {"id", "origin_id", "origin_slot", "target_id", "target_slot", "type"}
            link = Link(raw["origin_id"], raw["origin_slot"], raw["target_id"], raw["target_slot"], raw.get("type"))
            out[int(raw["id"])] = link
        else:  # schema 0.4: [id, origin, origin_slot, target, target_slot, type]
            out[int(raw[0])] = Link(raw[1], raw[2], raw[3], raw[4], raw[5] if len(raw) > 5 else None)
    return out


def widget_spec(spec: Any) -> tuple[bool, dict]:
    """(is this input a widget?, its options) for an ``/object_info`` input spec ``[type, options]``."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return False, {}
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput") or options.get("rawLink"):
        return False, options
    return isinstance(kind, list) or kind in WIDGET_TYPES, options


def default_value(spec: Any) -> Any:
    """The value the frontend gives a widget that the workflow does not set (``None`` if it has none)."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in options:
        return options["default"]
    choices = kind if isinstance(kind, list) else options.get("options")
    if choices:
        return choices[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def ordered_inputs(info: dict) -> list[tuple[str, Any]]:
    """(name, spec) of a node's required then optional inputs, in ``input_order`` when the server gives it."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {}
    out: list[tuple[str, Any]] = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section) or list(specs):
            if name in specs:
                out.append((name, specs[name]))
    return out


class _Values:
    """A cursor over ``widgets_values`` that knows the frontend's extra widgets."""

    def __init__(self, values: Any) -> None:
        self.by_name = values if isinstance(values, dict) else None
        self.items = list(values) if isinstance(values, list) else []
        self.pos = 0

    def take(self, name: str, spec: Any, options: dict) -> tuple[bool, Any]:
        if self.by_name is not None:
            return (name in self.by_name), self.by_name.get(name)
        if self.pos >= len(self.items):
            return False, None
        value = self.items[self.pos]
        self.pos += 1
        self._skip_extras(name, spec, options)
        return True, value

    def _skip_extras(self, name: str, spec: Any, options: dict) -> None:
        nxt = self.items[self.pos] if self.pos < len(self.items) else None
        control = options.get("control_after_generate") or (spec[0] == "INT" and name in SEED_NAMES)
        if control and nxt in CONTROL_VALUES:
            self.pos += 1
        elif any(options.get(k) for k in UPLOAD_OPTIONS) and nxt in UPLOAD_VALUES:
            self.pos += 1


class Converter:
    """Converts one UI workflow with the node definitions of one server."""

    def __init__(self, object_info: dict) -> None:
        self.info = object_info

    def convert(self, workflow: dict) -> dict:
        if is_api_format(workflow):
            return {str(k): dict(v) for k, v in workflow.items()}
        workflow = copy.deepcopy(workflow)
        migrate(workflow)  # v1-era widget lists, as the frontend extension does when a workflow is opened
        nodes = {int(n["id"]): n for n in workflow.get("nodes", [])}
        self._check_types(workflow, nodes)
        self.nodes, self.links = nodes, _links(workflow)
        prompt: dict[str, dict] = {}
        for node_id, node in sorted(nodes.items()):
            if node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
                continue
            replacement = replacement_for(node["type"], self.info)
            if replacement is not None:
                prompt[str(node_id)] = self._replaced(node, replacement)
                continue
            if node["type"] not in self.info:
                continue
            prompt[str(node_id)] = {
                "class_type": node["type"],
                "inputs": self._inputs(node),
                "_meta": {"title": node.get("title") or self.info[node["type"]].get("display_name", node["type"])},
            }
        return prompt

    def _check_types(self, workflow: dict, nodes: dict[int, dict]) -> None:
        subgraphs = {s.get("id") for s in (workflow.get("definitions") or {}).get("subgraphs") or []}
        missing = sorted({n["type"] for n in nodes.values() if n["type"] not in self.info
                          and replacement_for(n["type"], self.info) is None and n["type"] not in FRONTEND_ONLY
                          and n.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS)})
        nested = [t for t in missing if t in subgraphs or t.startswith("workflow>") or t.startswith("workflow/")]
        if nested:
            raise ConversionError(f"subgraphs / group nodes are not supported ({', '.join(nested)}); "
                                  "unpack them in the editor or export the workflow in API format")
        if missing:
            raise ConversionError(f"node types not on this server: {', '.join(missing)} "
                                  "(a custom node pack is missing or failed to import; see the server log)")

    def _inputs(self, node: dict) -> dict[str, Any]:
        sockets = {i["name"]: i for i in node.get("inputs") or [] if isinstance(i, dict) and "name" in i}
        values = _Values(node.get("widgets_values"))
        out: dict[str, Any] = {}
        for name, spec in ordered_inputs(self.info[node["type"]]):
            widget, options = widget_spec(spec)
            has_value, value = values.take(name, spec, options) if widget else (False, None)
            socket = sockets.get(name)
            if socket is not None and socket.get("link") is not None:
                source = self._resolve(socket["link"])
                if source is not None:
                    out[name] = source[1] if source[0] == "value" else list(source)
                    continue
            if widget:
                if not has_value:
                    value = default_value(spec)
                if value is not None:
                    out[name] = value
        return out

    def _replaced(self, node: dict, replacement: Replacement) -> dict:
        """A retired node as its replacement: each linked input under its new name."""
        inputs: dict[str, Any] = {}
        for socket in node.get("inputs") or []:
            new_name = replacement.inputs.get(socket.get("name"))
            source = self._resolve(socket["link"]) if new_name and socket.get("link") is not None else None
            if source is not None:
                inputs[new_name] = source[1] if source[0] == "value" else list(source)
        return {"class_type": replacement.new_type, "inputs": inputs,
                "_meta": {"title": node.get("title") or replacement.new_type}}

    def _resolve(self, link_id: int, depth: int = 0) -> tuple | None:
        """``(origin_id, slot)``, ``("value", v)`` for a PrimitiveNode, or None for no usable source."""
        if depth > 100:
            raise ConversionError("link cycle through Reroute/bypassed nodes")
        link = self.links.get(int(link_id))
        if link is None:
            return None
        origin = self.nodes.get(int(link.origin))
        if origin is None or origin.get("mode", 0) == MODE_MUTED:
            return None
        if origin["type"] == "Reroute":
            upstream = next((i.get("link") for i in origin.get("inputs") or []), None)
            return None if upstream is None else self._resolve(upstream, depth + 1)
        if origin["type"] == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            return ("value", values[0]) if values else None
        if origin.get("mode", 0) == MODE_BYPASS:
            upstream = self._bypass_source(origin, link)
            return None if upstream is None else self._resolve(upstream, depth + 1)
        return str(link.origin), int(link.origin_slot)

    @staticmethod
    def _bypass_source(node: dict, link: Link) -> int | None:
        """The link a bypassed node passes through: the input of the output's type, same slot first."""
        outputs = node.get("outputs") or []
        wanted = link.type
        if link.origin_slot < len(outputs):
            wanted = outputs[link.origin_slot].get("type", wanted)
        inputs = [i for i in node.get("inputs") or [] if i.get("link") is not None]
        all_inputs = node.get("inputs") or []
        if link.origin_slot < len(all_inputs):
            same = all_inputs[link.origin_slot]
            if same.get("link") is not None and same.get("type") == wanted:
                return same["link"]
        for candidate in inputs:
            if candidate.get("type") == wanted:
                return candidate["link"]
        return None


def convert(workflow: dict, object_info: dict) -> dict:
    """A UI workflow (or an API prompt, returned as a copy) as an API-format prompt."""
    return Converter(object_info).convert(workflow)
