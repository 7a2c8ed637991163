"""Editing API-format prompts: ``--set NODE.input=value`` overrides and helpers by node class."""

from __future__ import annotations

import json
from typing import Any


class OverrideError(ValueError):
    """An override names no node, or is not of the form ``NODE.input=value``."""


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, lists, quoted strings), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def nodes_matching(prompt: dict, selector: str) -> list[str]:
    """Node ids selected by an id, else by class_type, else by title (``_meta.title``)."""
    if selector in prompt:
        return [selector]
    by_class = [k for k, v in prompt.items() if v.get("class_type") == selector]
    if by_class:
        return by_class
    return [k for k, v in prompt.items() if (v.get("_meta") or {}).get("title") == selector]


def apply_override(prompt: dict, override: str) -> list[str]:
    """Apply one ``NODE.input=value`` (NODE: id, class_type or title); returns the node ids changed."""
    target, sep, raw = override.partition("=")
    selector, dot, name = target.rpartition(".")
    if not sep or not dot or not selector or not name:
        raise OverrideError(f"--set {override!r}: expected NODE.input=value, e.g. 3.steps=4 or KSampler.seed=7")
    ids = nodes_matching(prompt, selector)
    if not ids:
        raise OverrideError(f"--set {override!r}: no node with id, class or title {selector!r}; nodes: "
                            + ", ".join(f"{k} {v['class_type']}" for k, v in prompt.items()))
    for node_id in ids:
        prompt[node_id].setdefault("inputs", {})[name] = parse_value(raw)
    return ids


def set_inputs(prompt: dict, class_type: str, **values: Any) -> list[str]:
    """Set inputs on every node of ``class_type``; returns their ids."""
    ids = [k for k, v in prompt.items() if v.get("class_type") == class_type]
    for node_id in ids:
        prompt[node_id]["inputs"].update(values)
    return ids


def find(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v.get("class_type") == class_type]
