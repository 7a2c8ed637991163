"""Our /object_info against the incumbent's node signatures (tests/compat/incumbent_nodes.json).

Saved workflows store widget values by position and links by input name, so for every incumbent
node id we must have the same input names in the same order, the same types, combo options and
defaults, numeric defaults/ranges/steps and output types. New inputs are allowed only as optional
inputs after the incumbent's. One test per node id, so a missing or drifted node is named.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

TABLE_PATH = Path(__file__).resolve().parents[1] / "compat" / "incumbent_nodes.json"
TABLE = json.loads(TABLE_PATH.read_text())
NUMBER_KEYS = ("default", "min", "max", "step")


def node_info(cls) -> dict:
    """The fields of ComfyUI's ``/object_info`` (server.py ``node_info``) that workflows depend on."""
    from comfy_api.internal import _ComfyNodeInternal

    if issubclass(cls, _ComfyNodeInternal):
        info = cls.GET_NODE_INFO_V1()
        return {k: info[k] for k in ("input", "input_order", "output", "output_node")}
    types = cls.INPUT_TYPES()
    return {
        "input": types,
        "input_order": {key: list(value.keys()) for key, value in types.items()},
        "output": list(cls.RETURN_TYPES),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }


def _ours(spec) -> tuple[str, list | None, dict]:
    """(type, combo options or None, widget options) of one of our input declarations."""
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        return "COMBO", list(kind), opts
    if kind == "COMBO":
        return "COMBO", list(opts.get("options", [])), opts
    return kind, None, opts


def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


def _compare_input(name: str, expected: list, spec) -> list[str]:
    want_type = expected[1]
    want = expected[2] if len(expected) > 2 else {}
    got_type, options, opts = _ours(spec)
    problems: list[str] = []
    if got_type != want_type:
        return [f"input '{name}': type {got_type}, incumbent {want_type}"]
    if want_type == "COMBO":
        if want["options"] == "dynamic":
            return problems
        want_options = want["options"]
        if isinstance(want_options, str):
            want_options = TABLE["sets"][want_options.lstrip("$")]
        # Saved workflows store the chosen value, so new choices may be appended after the incumbent's.
        if list(options[: len(want_options)]) != list(want_options):
            problems.append(f"input '{name}': options {options}, incumbent {want_options} (in this order first)")
        want_default = want.get("default", want_options[0])
        got_default = opts.get("default", options[0] if options else None)
        if got_default != want_default:
            problems.append(f"input '{name}': default {got_default!r}, incumbent {want_default!r}")
        return problems
    if want_type in ("INT", "FLOAT"):
        for key in NUMBER_KEYS:
            if key not in want:
                continue
            if key == "step" and want[key] is None:
                if opts.get("step") not in (None, 1) or (want_type == "FLOAT" and "step" in opts):
                    problems.append(f"input '{name}': step {opts.get('step')}, incumbent declares none")
                continue
            if key not in opts or not _close(opts[key], want[key]):
                problems.append(f"input '{name}': {key} {opts.get(key)!r}, incumbent {want[key]!r}")
        return problems
    if want_type in ("STRING", "BOOLEAN"):
        if "default" in want and opts.get("default") != want["default"]:
            problems.append(f"input '{name}': default {opts.get('default')!r}, incumbent {want['default']!r}")
        if bool(opts.get("multiline", False)) != bool(want.get("multiline", False)):
            problems.append(f"input '{name}': multiline {opts.get('multiline')}, incumbent {want.get('multiline')}")
    return problems


def signature_problems(expected: dict, info: dict) -> list[str]:
    """Every way ``info`` (our node) differs from the incumbent's ``expected`` signature."""
    problems: list[str] = []
    order = info["input_order"]
    want_required = [e[0] for e in expected["required"]]
    want_optional = [e[0] for e in expected["optional"]]
    got_required = order.get("required", [])
    got_optional = order.get("optional", [])
    if got_required != want_required:
        problems.append(f"required inputs {got_required}, incumbent {want_required}")
    if got_optional[:len(want_optional)] != want_optional:
        problems.append(f"optional inputs {got_optional}, incumbent {want_optional} (extras only after these)")
    for section in ("required", "optional"):
        ours = info["input"].get(section, {})
        for entry in expected[section]:
            if entry[0] in ours:
                problems += _compare_input(entry[0], entry, ours[entry[0]])
    if list(info["output"]) != expected["outputs"]:
        problems.append(f"outputs {list(info['output'])}, incumbent {expected['outputs']}")
    if expected.get("output_node") and not info["output_node"]:
        problems.append("not an OUTPUT_NODE, the incumbent's is")
    return problems


def test_table_lists_every_incumbent_node():
    assert len(TABLE["nodes"]) == 37
    for node_id, sig in TABLE["nodes"].items():
        assert {"required", "optional", "outputs"} <= set(sig), node_id


@pytest.mark.parametrize("node_id", sorted(TABLE["nodes"]))
def test_signature_matches_incumbent(node_id, comfy, pack):
    cls = comfy.NODE_CLASS_MAPPINGS.get(node_id)
    if cls is None or pack.NODE_CLASS_MAPPINGS.get(node_id) is not cls:
        pytest.fail(f"{node_id}: missing: the pack registers no node with this id (saved workflows using it "
                    "will not load)")
    problems = signature_problems(TABLE["nodes"][node_id], node_info(cls))
    assert not problems, f"{node_id} drifted from the incumbent's signature:\n  " + "\n  ".join(problems)


def test_comparator_reports_drift(comfy, pack):
    """The comparison itself must catch each kind of drift (guards against a check that cannot fail)."""
    cls = pack.NODE_CLASS_MAPPINGS["IPAdapterWeights"]
    info = node_info(cls)
    expected = TABLE["nodes"]["IPAdapterWeights"]
    assert signature_problems(expected, info) == []

    def drifted(mutate) -> list[str]:
        changed = copy.deepcopy(info)
        mutate(changed)
        return signature_problems(expected, changed)

    def reorder(i):
        i["input_order"]["required"][1], i["input_order"]["required"][2] = (i["input_order"]["required"][2],
                                                                            i["input_order"]["required"][1])

    assert drifted(reorder)
    assert drifted(lambda i: i["input"]["required"].__setitem__("frames", ("INT", {"default": 1, "min": 0,
                                                                                  "max": 9999, "step": 1})))
    assert drifted(lambda i: i["input"]["required"].__setitem__("timing", (["linear", "custom"], {})))
    assert drifted(lambda i: i["input"]["required"].__setitem__("weights", ("STRING", {"default": "1.0, 0.0"})))
    assert drifted(lambda i: i.__setitem__("output", ["FLOAT"]))
    assert drifted(lambda i: i["input_order"]["optional"].insert(0, "extra"))
    assert not drifted(lambda i: i["input_order"]["optional"].append("extra"))  # appended extras are allowed


def test_every_input_of_every_node_has_a_tooltip(comfy, pack):
    """All registered nodes: the incumbent's, the v1 ones and our own (Doctor, v1 encoder alias)."""
    missing = {node_id: names for node_id, cls in pack.NODE_CLASS_MAPPINGS.items()
               if (names := [name for section in ("required", "optional")
                             for name, spec in cls.INPUT_TYPES().get(section, {}).items()
                             if not (len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("tooltip"))])}
    assert not missing, f"inputs without a tooltip: {missing}"
