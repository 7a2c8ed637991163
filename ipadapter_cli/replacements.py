"""Core nodes that newer ComfyUI retires, and the node that replaces each (used when converting a workflow).

A shipped workflow has to open on every host we support, so it keeps a node that exists on all of them
even once newer hosts deprecate it. When a host no longer lists such a node but lists its replacement,
the converter writes the replacement instead, the way the host's own node replacements map it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Replacement:
    new_type: str
    inputs: dict[str, str]  # old input name -> new input name


RETIRED = {
    # ComfyUI marks ImageBatch DEPRECATED (nodes.py, 2026) and registers BatchImagesNode, whose images are
    # the Autogrow inputs images.image0, images.image1, ... (comfy_extras node replacements). 0.3.64 has
    # no BatchImagesNode, so batch_schedule_sd15.json keeps ImageBatch.
    "ImageBatch": Replacement("BatchImagesNode", {"image1": "images.image0", "image2": "images.image1"}),
}


def replacement_for(node_type: str, object_info: dict) -> Replacement | None:
    """The replacement to use for ``node_type`` on this server, or None when the node itself is there."""
    found = RETIRED.get(node_type)
    if found is None or node_type in object_info or found.new_type not in object_info:
        return None
    return found
