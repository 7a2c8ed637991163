"""v1-era UI workflows written from incumbent-v1.md (widget lists exactly as v1 saved them).

Socket lists come from the server's ``/object_info`` (``from_object_info``); every ``widgets_values``
list is written out by hand from the spec's tables, so a wrong widget order on our side shows up as
a wrong value. ``migrate`` (ipadapter_cli.migrate) mirrors web/ipadapter_suite.js.
"""

from __future__ import annotations

from ipadapter_cli.migrate import INTERPOLATION_V1, is_v1_encoder, migrate  # noqa: F401  (re-exported)
from tests.host.example_workflows import common, image
from tests.host.workflow_builder import N, build

ADAPTER = "ip-adapter_sd15.safetensors"
CLIP = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
V1_ENCODER_VALUES = [False, 0.0, 0.6, 1.0, 1.0, 1.0]  # ipadapter_plus, noise, weight_1..4 (§1.6)


class FromInfo:
    """A node class stand-in built from one ``/object_info`` entry (inputs in ``input_order``)."""

    def __init__(self, info: dict) -> None:
        self.info = info
        self.RETURN_TYPES = tuple(t if isinstance(t, str) else "COMBO" for t in info.get("output", []))
        self.RETURN_NAMES = tuple(info.get("output_name") or self.RETURN_TYPES)
        self.__name__ = info.get("name", "node")

    def INPUT_TYPES(self) -> dict:
        out = {}
        for section in ("required", "optional"):
            specs = self.info["input"].get(section) or {}
            order = (self.info.get("input_order") or {}).get(section) or list(specs)
            out[section] = {name: specs[name] for name in order}
        return out


def from_object_info(object_info: dict) -> dict[str, FromInfo]:
    classes = {k: FromInfo(v) for k, v in object_info.items()}
    # The v1 encoder is saved under the shared id with v1 sockets: lay it out like IPAdapterEncoderV1.
    if "IPAdapterEncoderV1" in classes:
        classes["IPAdapterEncoder"] = classes["IPAdapterEncoderV1"]
    return classes


def _loaders(adapter: str = ADAPTER) -> list[N]:
    return [N(2, "IPAdapterModelLoader", (420, 60), [adapter]), N(4, "CLIPVisionLoader", (420, 200), [CLIP]),
            image(3)]


def apply_v1(values: list | None = None) -> tuple[list, list]:
    """Loaders -> IPAdapterApply (§1.2: weight, noise, weight_type, start_at, end_at, unfold_batch)."""
    nodes, links = common("a cat on a sofa", (12, 0))
    nodes += _loaders() + [N(12, "IPAdapterApply", (800, 60), values or [0.8, 0.3, "original", 0.0, 1.0, False])]
    links += [(2, 0, 12, "ipadapter"), (4, 0, 12, "clip_vision"), (3, "IMAGE", 12, "image"), (1, "MODEL", 12, "model")]
    return nodes, links


def encoded_v1(batch_embeds: bool = False) -> tuple[list, list]:
    """v1 IPAdapterEncoder (shared id, v1 widgets) -> [IPAdapterBatchEmbeds] -> IPAdapterApplyEncoded."""
    nodes, links = common("a cat on a sofa", (12, 0), batch=2 if batch_embeds else 1)
    nodes += _loaders() + [N(13, "IPAdapterEncoder", (420, 400), list(V1_ENCODER_VALUES)),
                           N(12, "IPAdapterApplyEncoded", (800, 60),
                             [0.8, "channel penalty", 0.0, 1.0, batch_embeds])]
    links += [(4, 0, 13, "clip_vision"), (3, "IMAGE", 13, "image_1"), (2, 0, 12, "ipadapter"),
              (1, "MODEL", 12, "model")]
    if batch_embeds:
        nodes += [N(14, "IPAdapterEncoder", (420, 600), [False, 0.5, 1.0, 1.0, 1.0, 1.0]),
                  N(15, "IPAdapterBatchEmbeds", (800, 400))]
        links += [(4, 0, 14, "clip_vision"), (3, "IMAGE", 14, "image_1"), (13, 0, 15, "embed1"),
                  (14, 0, 15, "embed2"), (15, 0, 12, "embeds")]
    else:
        links += [(13, 0, 12, "embeds")]
    return nodes, links


def tiles_v1() -> tuple[list, list]:
    """IPAdapterTilesMasked (§1.5: weight, noise, weight_type, start_at, end_at, short_side_tiles, tile_weight)."""
    nodes, links = common("a cat on a sofa", (12, 0))
    nodes += _loaders() + [N(12, "IPAdapterTilesMasked", (800, 60), [0.7, 0.2, "linear", 0.0, 1.0, 2, 0.6])]
    links += [(2, 0, 12, "ipadapter"), (4, 0, 12, "clip_vision"), (3, "IMAGE", 12, "image"), (1, "MODEL", 12, "model")]
    return nodes, links


def workflow(classes: dict, described: tuple[list, list], number: int = 90) -> dict:
    nodes, links = described
    out = build(classes, nodes, links, f"00000000-0000-4000-8000-{number:012d}")
    for node in out["nodes"]:  # v1-era files predate cnr_id/ver and the "models" hints
        node.get("properties", {}).pop("models", None)
    return out
