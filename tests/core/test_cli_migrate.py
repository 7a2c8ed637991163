"""The CLI's v1 migration matches the frontend extension's (web/ipadapter_suite.js) on newer workflow data."""

from __future__ import annotations

from ipadapter_cli.migrate import migrate


def _prep_v1() -> dict:
    return {"id": 3, "type": "PrepImageForClipVision", "widgets_values": ["lanczos", "center", 0.0, False],
            "widgets_values_named": {"interpolation": "lanczos", "crop_position": "center", "sharpening": 0.0}}


def test_nodes_inside_subgraph_definitions_are_migrated():
    workflow = {"nodes": [_prep_v1()], "definitions": {"subgraphs": [{"id": "s", "nodes": [_prep_v1()]}]}}
    assert migrate(workflow) == 2
    inner = workflow["definitions"]["subgraphs"][0]["nodes"][0]
    assert inner["widgets_values"] == ["LANCZOS", "center", 0.0]


def test_a_rewritten_node_loses_its_named_values_and_others_keep_theirs():
    kept = {"id": 4, "type": "IPAdapterAdvanced", "widgets_values": [1.0], "widgets_values_named": {"weight": 1.0}}
    workflow = {"nodes": [_prep_v1(), kept]}
    assert migrate(workflow) == 1
    assert "widgets_values_named" not in workflow["nodes"][0]
    assert workflow["nodes"][1]["widgets_values_named"] == {"weight": 1.0}
