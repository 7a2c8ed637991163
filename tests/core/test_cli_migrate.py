"""The CLI's v1 migration matches the frontend extension's (web/ipadapter_suite.js) on newer workflow data."""

from __future__ import annotations

import pytest

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


# --- hand-written expectations (v1 widget lists, PIL resampling names), never computed by migrate itself ---


def test_v1_encoder_saved_with_its_six_widgets_becomes_the_v1_node():
    node = {"id": 13, "type": "IPAdapterEncoder", "widgets_values": [False, 0.0, 0.6, 1.0, 1.0, 1.0],
            "inputs": [{"name": "clip_vision", "type": "CLIP_VISION", "link": 4},
                       {"name": "image", "type": "IMAGE", "link": 5}],
            "widgets_values_named": {"ipadapter_plus": False}}
    assert migrate({"nodes": [node]}) == 1
    assert node == {"id": 13, "type": "IPAdapterEncoderV1", "widgets_values": [False, 0.0, 0.6, 1.0, 1.0, 1.0],
                    "inputs": [{"name": "clip_vision", "type": "CLIP_VISION", "link": 4},
                               {"name": "image_1", "type": "IMAGE", "link": 5}]}


def test_v1_encoder_is_recognised_by_a_lone_boolean_widget_or_by_its_sockets():
    lone_bool = {"type": "IPAdapterEncoder", "widgets_values": [True]}
    sockets_only = {"type": "IPAdapterEncoder", "inputs": [{"name": "clip_vision"}, {"name": "image_1"}]}
    assert migrate({"nodes": [lone_bool, sockets_only]}) == 2
    assert lone_bool["type"] == sockets_only["type"] == "IPAdapterEncoderV1"
    assert sockets_only["inputs"] == [{"name": "clip_vision"}, {"name": "image_1"}]


def test_v2_encoder_and_other_nodes_are_left_alone():
    v2 = {"type": "IPAdapterEncoder", "widgets_values": [1.0],
          "inputs": [{"name": "ipadapter"}, {"name": "image"}, {"name": "mask"}, {"name": "clip_vision"}]}
    v2_no_widgets = {"type": "IPAdapterEncoder", "inputs": [{"name": "ipadapter"}, {"name": "image"}]}
    prep_v2 = {"type": "PrepImageForClipVision", "widgets_values": ["LANCZOS", "top", 0.1]}
    apply_node = {"type": "IPAdapterApply", "widgets_values": [0.8, 0.0, "original", 0.0, 1.0, False]}
    workflow = {"nodes": [v2, v2_no_widgets, prep_v2, apply_node]}
    assert migrate(workflow) == 0
    assert workflow == {"nodes": [
        {"type": "IPAdapterEncoder", "widgets_values": [1.0],
         "inputs": [{"name": "ipadapter"}, {"name": "image"}, {"name": "mask"}, {"name": "clip_vision"}]},
        {"type": "IPAdapterEncoder", "inputs": [{"name": "ipadapter"}, {"name": "image"}]},
        {"type": "PrepImageForClipVision", "widgets_values": ["LANCZOS", "top", 0.1]},
        {"type": "IPAdapterApply", "widgets_values": [0.8, 0.0, "original", 0.0, 1.0, False]},
    ]}


@pytest.mark.parametrize(("old", "new"), [("lanczos", "LANCZOS"), ("bicubic", "BICUBIC"), ("bilinear", "BILINEAR"),
                                          ("nearest", "NEAREST"), ("nearest-exact", "NEAREST"), ("area", "BOX"),
                                          ("LANCZOS", "LANCZOS")])
def test_four_value_prep_image_keeps_crop_and_sharpening_and_renames_the_interpolation(old: str, new: str):
    node = {"id": 7, "type": "PrepImageForClipVision", "widgets_values": [old, "left", 0.25, True]}
    assert migrate({"nodes": [node]}) == 1
    assert node == {"id": 7, "type": "PrepImageForClipVision", "widgets_values": [new, "left", 0.25]}
