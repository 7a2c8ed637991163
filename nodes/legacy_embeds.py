"""v1 embeds: the v1 encoder (shared id ``IPAdapterEncoder``) and ``IPAdapterBatchEmbeds``.

A v1 EMBEDS value is one tensor with cond and uncond stacked on axis 0 (incumbent-v1.md §2.11):
``[2, N, D]`` (pooled image embeds) or ``[2, N, 257, D]`` (hidden states, "ipadapter_plus").

The id ``IPAdapterEncoder`` belongs to v2 today (nodes/embeds.py), with other inputs. The v1 encoder
is therefore registered as ``IPAdapterEncoderV1``, and saved v1 graphs reach it two ways:
* UI workflows: the pack's frontend extension (web/ipadapter_suite.js) renames v1-shaped
  ``IPAdapterEncoder`` nodes when a workflow is opened, keeping their widget values;
* API prompts (``POST /prompt``, PNG metadata, scripts): ``rewrite_prompt`` is registered as a
  server prompt handler and routes an ``IPAdapterEncoder`` with v1 inputs to ``IPAdapterEncoderV1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ipadapter_core.embeds import check_finite
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.legacy_noise import v1_noise_image
from . import base, encoding, host
from .legacy_common import CATEGORY, NOISE, split_v1_embeds

V1_ENCODER_ID = "IPAdapterEncoderV1"
V1_ENCODER_INPUTS = {"ipadapter_plus", "noise", "weight_1", "weight_2", "weight_3", "weight_4", "image_1", "image_2",
                     "image_3", "image_4", "plus"}
CLIP_VISION_INPUT = ("CLIP_VISION", {"tooltip": "CLIP vision encoder matching the adapter the embeds are for."})


def _weight(tooltip: str) -> tuple:
    return base.float_input(1.0, 0.0, 1.0, 0.01, tooltip)


def fit_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """ComfyUI ``common_upscale(..., "bilinear", "center")``: crop to the target aspect, then resize."""
    _, h, w, _ = image.shape
    if (h, w) == (height, width):
        return image
    x = y = 0
    old, new = w / h, width / height
    if old > new:
        x = round((w - w * (new / old)) / 2)
    elif old < new:
        y = round((h - h * (old / new)) / 2)
    cropped = image[:, y:h - y, x:w - x, :].movedim(-1, 1)
    return F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False).movedim(1, -1)


class IPAdapterEncoderV1(base.Node):
    DISPLAY_NAME = "Encode IPAdapter Image (v1)"
    DESCRIPTION = ("v1 'Encode IPAdapter Image' (saved v1 graphs open with it): up to four weighted references into "
                   "one v1 embeds pair. New graphs: 'IPAdapter Encoder'.")
    CATEGORY = CATEGORY
    DEPRECATED = True
    RETURN_TYPES = ("EMBEDS",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        slot = "Reference image {}: resized to image_1's size if it differs (centre crop, then bilinear)."
        weight = "Weight of image {}: its embeds are multiplied by weight squared (v1 rule) before projection."
        return {
            "required": {
                "clip_vision": CLIP_VISION_INPUT,
                "image_1": ("IMAGE", {"tooltip": "Reference image 1 (its size is the one the others are fitted to)."}),
                "ipadapter_plus": ("BOOLEAN", {"default": False, "tooltip": "On for plus / full-face adapters "
                                   "(CLIP hidden states), off for the others (pooled embeds). Must match the "
                                   "adapter."}),
                "noise": NOISE,
                "weight_1": _weight(weight.format(1)),
            },
            "optional": {
                "image_2": ("IMAGE", {"tooltip": slot.format(2)}),
                "image_3": ("IMAGE", {"tooltip": slot.format(3)}),
                "image_4": ("IMAGE", {"tooltip": slot.format(4)}),
                "weight_2": _weight(weight.format(2)),
                "weight_3": _weight(weight.format(3)),
                "weight_4": _weight(weight.format(4)),
            },
        }

    def run(self, clip_vision, image_1, ipadapter_plus=False, noise=0.0, weight_1=1.0, image_2=None, image_3=None,
            image_4=None, weight_2=1.0, weight_3=1.0, weight_4=1.0):
        if clip_vision is None:
            raise IPAdapterError("No CLIP vision encoder is connected.", expected="a 'Load CLIP Vision' output",
                                 fix="Connect the encoder that matches your adapter.", input="clip_vision")
        slots = [(image_1, weight_1, "image_1"), (image_2, weight_2, "image_2"), (image_3, weight_3, "image_3"),
                 (image_4, weight_4, "image_4")]
        images, weights = [], []
        height, width = None, None
        for image, weight, name in slots:
            if image is None:
                continue
            encoding.check_image(image, name)
            image = image[..., :3].float()
            if height is None:
                height, width = image.shape[1:3]
            images.append(fit_to(image, height, width))
            weights += [float(weight) ** 2] * image.shape[0]
        batch = torch.cat(images)
        key = "penultimate_hidden_states" if ipadapter_plus else "image_embeds"
        cond = host.encode_image(clip_vision, batch)[key]
        if noise:
            uncond = host.encode_image(clip_vision, v1_noise_image(batch, float(noise)))[key]
        elif ipadapter_plus:
            black = host.black_image(clip_vision).expand(batch.shape[0], -1, -1, -1)
            uncond = host.encode_image(clip_vision, black)[key]
        else:
            uncond = torch.zeros_like(cond)
        if any(w != 1.0 for w in weights):
            cond = cond * torch.tensor(weights).reshape(-1, *([1] * (cond.dim() - 1)))
        return (torch.stack((cond, uncond)),)


class IPAdapterBatchEmbeds(base.Node):
    DISPLAY_NAME = "IPAdapter Batch Embeds (v1)"
    DESCRIPTION = ("v1 'IPAdapter Batch Embeds': joins two v1 embeds pairs image-wise (e.g. a long animation encoded "
                   "in chunks). New graphs: 'IPAdapter Combine Embeds' (concat).")
    CATEGORY = CATEGORY
    DEPRECATED = True
    RETURN_TYPES = ("EMBEDS",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "embed1": ("EMBEDS", {"tooltip": "First v1 embeds pair (its images come first)."}),
            "embed2": ("EMBEDS", {"tooltip": "Second v1 embeds pair, encoded the same way (same plus setting)."}),
        }}

    def run(self, embed1, embed2):
        first, second = split_v1_embeds(embed1, "embed1"), split_v1_embeds(embed2, "embed2")
        if first[0].shape[1:] != second[0].shape[1:]:
            raise IPAdapterError(
                f"The two pairs hold different embeds: {tuple(first[0].shape[1:])} vs {tuple(second[0].shape[1:])} "
                "per image.", expected="two pairs from the same encoder settings (ipadapter_plus, CLIP vision)",
                fix="Encode both with the same ipadapter_plus setting and CLIP vision model.", input="embed2",
            )
        out = torch.cat((torch.stack(first), torch.stack(second)), dim=1)
        check_finite(out, "embeds", "embed1")
        return (out,)


def is_v1_encoder(inputs: dict) -> bool:
    """True for an ``IPAdapterEncoder`` prompt entry with v1 inputs (incumbent-v1.md §1.14)."""
    names = set(inputs)
    return "ipadapter" not in names and bool(names & V1_ENCODER_INPUTS)


def rewrite_prompt(json_data: dict) -> dict:
    """Server prompt handler: route v1-shaped ``IPAdapterEncoder`` entries to ``IPAdapterEncoderV1``.

    The 2-item v1 layout (``plus``, ``image``, before 2023-10-12) is renamed to today's names. Returns
    a new dict when something changed; the posted data is never modified.
    """
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    if not isinstance(prompt, dict):
        return json_data
    changed = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("class_type") != "IPAdapterEncoder":
            continue
        inputs = node.get("inputs") or {}
        if not isinstance(inputs, dict) or not is_v1_encoder(inputs):  # anything else: ComfyUI's validation says
            continue
        renamed = {{"plus": "ipadapter_plus"}.get(k, k): v for k, v in inputs.items()}
        if "image_1" not in renamed and "image" in inputs:
            renamed["image_1"] = inputs["image"]
        changed[node_id] = {**node, "class_type": V1_ENCODER_ID, "inputs": renamed}
    if not changed:
        return json_data
    return {**json_data, "prompt": {**prompt, **changed}}


NODES = {V1_ENCODER_ID: IPAdapterEncoderV1, "IPAdapterBatchEmbeds": IPAdapterBatchEmbeds}
