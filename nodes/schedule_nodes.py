"""Weight schedules and regional params: Weights, strategies, prompt schedule, combine, regional."""

from __future__ import annotations

import torch

from ..ipadapter_core import schedules
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.limits import check_frames
from . import base, encoding, host

WEIGHTS_OUTPUTS = ("FLOAT", "FLOAT", "INT", "IMAGE", "IMAGE", "WEIGHTS_STRATEGY")
WEIGHTS_NAMES = ("weights", "weights_invert", "total_frames", "image_1", "image_2", "weights_strategy")
T_SCHEDULE_IMAGE = ("Optional image batch to animate: each image is repeated for one block of frames "
                    "(image_1), or paired with the next one for cross-fades (image_1 -> image_2).")


def _int(spec_default: int, tooltip: str) -> tuple:
    return ("INT", {"default": spec_default, "min": 0, "max": 9999, "step": 1, "tooltip": tooltip})


def _frame_count(image: torch.Tensor | None) -> int:
    if image is None:
        return 0
    encoding.check_image(image, "image")
    return int(image.shape[0])


def _outputs(strategy: schedules.Strategy, image: torch.Tensor | None) -> tuple:
    weights, inverted, total, image_1, image_2 = schedules.schedule(strategy, image)
    return (weights, inverted, total, image_1, image_2, strategy.as_dict())


class IPAdapterWeights(base.Node):
    """Per-frame weights for 'IPAdapter Batch' and friends (AnimateDiff cross-fades).

    Timing names keep the incumbent's curves for workflow compatibility: 'ease_in' rises fast then
    flattens (sin) and 'ease_out' starts slow (1 - cos), i.e. the two names are swapped relative to
    the usual easing vocabulary. weights_invert is max + min - w (the cross-fade partner).
    """

    DISPLAY_NAME = "IPAdapter Weights"
    DESCRIPTION = "Make a per-frame weight schedule (and matching image batches) for batch/animation workflows."
    CATEGORY = "ipadapter/weights"
    RETURN_TYPES = WEIGHTS_OUTPUTS
    RETURN_NAMES = WEIGHTS_NAMES

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "weights": ("STRING", {"default": "1.0, 0.0", "multiline": True, "tooltip": "Weights separated by "
                            "commas or new lines. With a timing other than custom, the first and last are the "
                            "start and end of the ramp."}),
                "timing": (schedules.TIMINGS, {"default": "linear", "tooltip": "custom = use the list as is; "
                           "otherwise a ramp from the first to the last weight. As in IPAdapter_plus, 'ease_in' "
                           "starts fast and 'ease_out' starts slow."}),
                "frames": _int(0, "Frames per image block for the ramp (at least 2). Ignored by custom."),
                "start_frame": _int(0, "Frame at which the ramp starts (earlier frames keep the first weight)."),
                "end_frame": ("INT", {"default": 9999, "min": 0, "max": 9999, "step": 1, "tooltip": "Frame at "
                              "which the ramp ends (later frames keep the last weight); capped at frames."}),
                "add_starting_frames": _int(0, "Extra frames at the very start holding the first weight and image "
                                            "(only with an image batch)."),
                "add_ending_frames": _int(0, "Extra frames at the very end holding the last weight and image "
                                          "(only with an image batch)."),
                "method": (schedules.METHODS, {"default": "full batch", "tooltip": "full batch: repeat the ramp "
                           "for every image; shift batches: cross-fade image i -> i+1; alternate batches: even "
                           "images on image_1, odd on image_2, ramps alternating direction."}),
            },
            "optional": {"image": ("IMAGE", {"tooltip": T_SCHEDULE_IMAGE})},
        }

    def run(self, weights, timing, frames, start_frame, end_frame, add_starting_frames, add_ending_frames, method,
            image=None):
        strategy = schedules.Strategy(weights, timing, frames, start_frame, end_frame, add_starting_frames,
                                      add_ending_frames, method, _frame_count(image)).checked()
        return _outputs(strategy, image)


class IPAdapterWeightsFromStrategy(base.Node):
    DISPLAY_NAME = "IPAdapter Weights From Strategy"
    DESCRIPTION = "Re-run an 'IPAdapter Weights' schedule (its weights_strategy output), e.g. on another image batch."
    CATEGORY = "ipadapter/weights"
    RETURN_TYPES = WEIGHTS_OUTPUTS
    RETURN_NAMES = WEIGHTS_NAMES

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"weights_strategy": ("WEIGHTS_STRATEGY", {"tooltip": "The weights_strategy output of "
                                              "'IPAdapter Weights'."})},
            "optional": {"image": ("IMAGE", {"tooltip": T_SCHEDULE_IMAGE})},
        }

    def run(self, weights_strategy, image=None):
        strategy = schedules.Strategy.from_dict(weights_strategy)
        if image is not None:
            strategy = schedules.Strategy(**{**strategy.as_dict(), "frame_count": _frame_count(image)})
        return _outputs(strategy, image)


class IPAdapterPromptScheduleFromWeightsStrategy(base.Node):
    DISPLAY_NAME = "Prompt Schedule From Weights Strategy"
    DESCRIPTION = "Write a FizzNodes-style prompt schedule with one prompt per image block of a weights strategy."
    CATEGORY = "ipadapter/weights"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt_schedule",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "weights_strategy": ("WEIGHTS_STRATEGY", {"tooltip": "The weights_strategy output of "
                                     "'IPAdapter Weights' (made with an image batch)."}),
                "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "One prompt per line, one line "
                           "per image; the last line repeats if there are fewer lines than images."}),
            },
        }

    def run(self, weights_strategy, prompt):
        return (schedules.prompt_schedule(schedules.Strategy.from_dict(weights_strategy), prompt),)


class IPAdapterCombineWeights(base.Node):
    DISPLAY_NAME = "IPAdapter Combine Weights"
    DESCRIPTION = "Join two weights or weight schedules into one list."
    CATEGORY = "ipadapter/utils"
    RETURN_TYPES = ("FLOAT", "INT")
    RETURN_NAMES = ("weights", "count")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        tip = "A weight, or a per-frame list from 'IPAdapter Weights' (connect it to this widget's input)."
        return {
            "required": {
                "weights_1": base.float_input(0.0, 0.0, 1.0, 0.05, tip),
                "weights_2": base.float_input(0.0, 0.0, 1.0, 0.05, tip),
            },
        }

    def run(self, weights_1, weights_2):
        weights = schedules.as_list(weights_1) + schedules.as_list(weights_2)
        check_frames(len(weights), "weights_2", "The combined weight list")
        return (weights, len(weights))


class IPAdapterRegionalConditioning(base.Node):
    DISPLAY_NAME = "IPAdapter Regional Conditioning"
    DESCRIPTION = ("One region of a regional prompt: an image (and optionally a text prompt) acting only inside "
                   "the mask. Feed the params to 'IPAdapter from Params' (several via 'IPAdapter Combine Params').")
    CATEGORY = "ipadapter/params"
    RETURN_TYPES = ("IPADAPTER_PARAMS", "CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("IPADAPTER_PARAMS", "POSITIVE", "NEGATIVE")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Reference image for this region."}),
                "image_weight": base.float_input(1.0, -1.0, 3.0, 0.05, base.T_WEIGHT),
                "prompt_weight": base.float_input(1.0, 0.0, 10.0, 0.05, "Strength of the text prompts inside the "
                                                  "mask (the conditioning's mask strength)."),
                "weight_type": base.WEIGHT_TYPE,
                "start_at": base.START_AT,
                "end_at": base.END_AT,
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Where this region is (white). Without it the image acts everywhere "
                         "and the prompts are passed through unchanged."}),
                "positive": ("CONDITIONING", {"tooltip": "Optional positive prompt for this region; the mask is "
                             "set on a copy."}),
                "negative": ("CONDITIONING", {"tooltip": "Optional negative prompt for this region; the mask is "
                             "set on a copy."}),
            },
        }

    def run(self, image, image_weight, prompt_weight, weight_type, start_at, end_at, mask=None, positive=None,
            negative=None):
        encoding.check_image(image, "image")
        if mask is not None:
            if mask.dim() == 2:
                mask = mask.unsqueeze(0)
            if mask.dim() != 3 or mask.numel() == 0:
                raise IPAdapterError(f"The mask has shape {tuple(mask.shape)}.", expected="a MASK [batch, H, W]",
                                     fix="Connect a MASK output (Load Image's mask, Solid Mask, ...).", input="mask")
            values = {"mask": mask, "set_area_to_bounds": False, "mask_strength": float(prompt_weight)}
            positive = host.conditioning_with_values(positive, values) if positive is not None else None
            negative = host.conditioning_with_values(negative, values) if negative is not None else None
        params = schedules.regional_params(image, mask, image_weight, weight_type, start_at, end_at)
        return (params, positive, negative)


class IPAdapterCombineParams(base.Node):
    DISPLAY_NAME = "IPAdapter Combine Params"
    DESCRIPTION = "Join the params of several regions for one 'IPAdapter from Params' node."
    CATEGORY = "ipadapter/params"
    RETURN_TYPES = ("IPADAPTER_PARAMS",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        tip = "Params from 'IPAdapter Regional Conditioning' or another Combine Params."
        return {
            "required": {f"params_{i}": ("IPADAPTER_PARAMS", {"tooltip": tip}) for i in (1, 2)},
            "optional": {f"params_{i}": ("IPADAPTER_PARAMS", {"tooltip": tip}) for i in (3, 4, 5)},
        }

    def run(self, params_1, params_2, params_3=None, params_4=None, params_5=None):
        return (schedules.combine_params(params_1, params_2, params_3, params_4, params_5),)


NODES = {
    "IPAdapterWeights": IPAdapterWeights,
    "IPAdapterWeightsFromStrategy": IPAdapterWeightsFromStrategy,
    "IPAdapterPromptScheduleFromWeightsStrategy": IPAdapterPromptScheduleFromWeightsStrategy,
    "IPAdapterCombineWeights": IPAdapterCombineWeights,
    "IPAdapterRegionalConditioning": IPAdapterRegionalConditioning,
    "IPAdapterCombineParams": IPAdapterCombineParams,
}
