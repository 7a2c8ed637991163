"""Widget migration of workflows saved with the incumbent's v1 nodes (mirrors web/ipadapter_suite.js).

The v1 and v2 ``IPAdapterEncoder`` share an id with different widgets; opening a v1 workflow routes
such nodes to ``IPAdapterEncoderV1``. Early ``PrepImageForClipVision`` lists had 4 values with other
interpolation names. The frontend extension does this in the browser; the converter does it here.
"""

from __future__ import annotations

INTERPOLATION_V1 = {"lanczos": "LANCZOS", "bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST",
                    "nearest-exact": "NEAREST", "area": "BOX"}


def is_v1_encoder(node: dict) -> bool:
    """A v1 encoder: its widgets start with the ``ipadapter_plus`` boolean, or it has v1 sockets."""
    if node.get("type") != "IPAdapterEncoder":
        return False
    values = node.get("widgets_values")
    names = [i.get("name") for i in node.get("inputs") or []]
    if isinstance(values, list) and (len(values) != 1 or isinstance(values[0], bool)):
        return True
    return bool(names) and "ipadapter" not in names and ("image_1" in names or "image" in names)


def migrate(workflow: dict) -> int:
    """Rewrite v1-era nodes of a UI workflow in place (subgraph definitions included, as the frontend
    extension does); returns how many nodes changed."""
    nodes = list(workflow.get("nodes") or [])
    for subgraph in (workflow.get("definitions") or {}).get("subgraphs") or []:
        nodes += subgraph.get("nodes") or []
    return sum(migrate_node(node) for node in nodes)


def migrate_node(node: dict) -> bool:
    """One node; a rewritten node loses ``widgets_values_named``, which newer frontends prefer to the list."""
    if is_v1_encoder(node):
        node["type"] = "IPAdapterEncoderV1"
        for socket in node.get("inputs") or []:
            if socket.get("name") == "image":
                socket["name"] = "image_1"
    elif node.get("type") == "PrepImageForClipVision" and len(node.get("widgets_values") or []) == 4:
        interpolation, crop, sharpening, _ = node["widgets_values"]
        node["widgets_values"] = [INTERPOLATION_V1.get(interpolation, interpolation), crop, sharpening]
    else:
        return False
    node.pop("widgets_values_named", None)
    return True
