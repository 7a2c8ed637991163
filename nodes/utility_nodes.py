"""Embeds and image utilities: combine, noise, prep for CLIP vision, save/load embeds."""

from __future__ import annotations

import os

import torch

from ..ipadapter_core import embeds_io, images, noise
from ..ipadapter_core.embeds import COMBINE_METHODS_ALL, combine
from ..ipadapter_core.errors import IPAdapterError
from . import base, encoding, host
from .pipeline import Pipeline

T_EMBED = "Embeds from 'IPAdapter Encoder', 'IPAdapter Load Embeds' or another Combine node."


class IPAdapterCombineEmbeds(base.Node):
    DISPLAY_NAME = "IPAdapter Combine Embeds"
    DESCRIPTION = "Merge up to five embeds into one before applying them with 'IPAdapter Embeds'."
    CATEGORY = "ipadapter/embeds"
    RETURN_TYPES = ("EMBEDS",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "embed1": ("EMBEDS", {"tooltip": T_EMBED}),
                "method": (COMBINE_METHODS_ALL, {"tooltip": base.T_COMBINE + " max/min keep the element-wise "
                                                 "largest/smallest value."}),
            },
            "optional": {f"embed{i}": ("EMBEDS", {"tooltip": T_EMBED}) for i in range(2, 6)},
        }

    def run(self, embed1, method, embed2=None, embed3=None, embed4=None, embed5=None):
        named = [(f"embed{i}", e) for i, e in enumerate((embed1, embed2, embed3, embed4, embed5), 1) if e is not None]
        parts = [embeds_io.check_embeds(e, name) for name, e in named]
        first = parts[0]
        for (name, _), part in zip(named[1:], parts[1:], strict=True):
            if part.shape[1:] != first.shape[1:]:
                raise IPAdapterError(
                    f"{name} has shape {tuple(part.shape)} but embed1 has {tuple(first.shape)}.",
                    expected="embeds made by the same adapter and CLIP vision (same tokens and width)",
                    fix="Encode every image with the same adapter and encoder before combining.", input=name,
                )
        stacked = torch.cat([p.to(first.dtype) for p in parts], dim=0) if len(parts) > 1 else first
        return (combine(stacked, method),)


class IPAdapterNoise(base.Node):
    DISPLAY_NAME = "IPAdapter Noise"
    DESCRIPTION = ("Make a noise image to use as image_negative: the result moves away from it, which often "
                   "reduces burn and washed-out colours.")
    CATEGORY = "ipadapter/utils"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "type": (noise.NOISE_TYPES, {"tooltip": "fade: blend towards uniform noise; dissolve: replace "
                                             "random pixels; gaussian: add Gaussian noise; shuffle: warp and "
                                             "flip the image, then add noise."}),
                "strength": base.float_input(1.0, 0.0, 1.0, 0.05, "How much noise: 0 keeps the base image."),
                "blur": ("INT", {"default": 0, "min": 0, "max": 32, "step": 1,
                                 "tooltip": "Gaussian blur kernel size applied afterwards (0 = none; even sizes "
                                 "are rounded up to odd)."}),
            },
            "optional": {
                "image_optional": ("IMAGE", {"tooltip": "Base image (centre-cropped to 224x224). Without it the "
                                             "base is black. The noise is seeded from this image, so it is "
                                             "repeatable."}),
            },
        }

    def run(self, type, strength, blur, image_optional=None):
        if image_optional is not None:
            encoding.check_image(image_optional, "image_optional")
        return (noise.make_noise(type, float(strength), int(blur), image_optional),)


class PrepImageForClipVision(base.Node):
    DISPLAY_NAME = "Prep Image For ClipVision"
    DESCRIPTION = ("Crop or pad reference images to a square at the encoder's input size, choosing what is kept, "
                   "instead of the encoder's automatic centre crop.")
    CATEGORY = "ipadapter/utils"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The image(s) to prepare."}),
                "interpolation": (images.INTERPOLATIONS, {"tooltip": "Resampling filter. LANCZOS and BICUBIC use "
                                  "antialiased bicubic, HAMMING and BILINEAR antialiased bilinear, BOX an area "
                                  "average, NEAREST the nearest pixel."}),
                "crop_position": (images.CROP_POSITIONS, {"tooltip": "Which part of a non-square image to keep; "
                                  "'pad' keeps all of it and fills the rest with black."}),
                "sharpening": base.float_input(0.0, 0.0, 1.0, 0.05, "Contrast-adaptive sharpening after resizing "
                                               "(0 = none). Helps small details survive the downscale."),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "Optional: the encoder the image is for. Its input size "
                                "is used (336 for ViT-L-336 / Kolors); without it the output is 224x224."}),
            },
        }

    def run(self, image, interpolation, crop_position, sharpening, clip_vision=None):
        encoding.check_image(image, "image")
        size = int(getattr(clip_vision, "image_size", None) or 224) if clip_vision is not None else 224
        return (images.prep_for_clip_vision(image, size, interpolation, crop_position, float(sharpening)),)


class IPAdapterSaveEmbeds(base.Node):
    DISPLAY_NAME = "IPAdapter Save Embeds"
    DESCRIPTION = ("Save embeds to the output folder as <prefix>_<counter>_.safetensors. 'IPAdapter Load Embeds' "
                   "lists them, marked [output] (press R to refresh its list after a save).")
    CATEGORY = "ipadapter/embeds"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "embeds": ("EMBEDS", {"tooltip": "The embeds to save."}),
                "filename_prefix": ("STRING", {"default": "IP_embeds", "tooltip": "File name prefix; may contain "
                                    "sub-folders (e.g. 'embeds/portrait') inside the output folder."}),
            },
            "optional": {
                "ipadapter": ("IPADAPTER", {"tooltip": "Optional: the adapter the embeds were made for. Its kind is "
                              "written into the file and the embeds are checked against it."}),
            },
        }

    def run(self, embeds, filename_prefix, ipadapter=None):
        embeds = embeds_io.check_embeds(embeds, "embeds")
        kind, label = "", ""
        if isinstance(ipadapter, Pipeline) and ipadapter.adapter is not None:
            model_kind = ipadapter.adapter.kind
            if model_kind.encoder_width is not None and embeds.shape[-1] != model_kind.encoder_width:
                raise IPAdapterError(
                    f"The embeds are {embeds.shape[-1]} wide but the {model_kind.label} adapter reads "
                    f"{model_kind.encoder_width}-wide {model_kind.encoder_output}.", input="ipadapter",
                    expected="the adapter the embeds were encoded with",
                    fix="Connect the same adapter that fed 'IPAdapter Encoder', or disconnect this input.",
                )
            kind, label = model_kind.kind, model_kind.label
        path, name, subfolder = host.output_save_path(filename_prefix, embeds_io.SAFETENSORS_EXT)
        embeds_io.save_embeds(path, embeds, kind, label)
        return {"ui": {"embeds": [{"filename": name, "subfolder": subfolder, "type": "output"}]}, "result": ()}


class IPAdapterLoadEmbeds(base.Node):
    DISPLAY_NAME = "IPAdapter Load Embeds"
    DESCRIPTION = ("Load embeds saved by 'IPAdapter Save Embeds' (.safetensors) or by ComfyUI_IPAdapter_plus "
                   "(.ipadpt) from the input folder, or those Save Embeds wrote to the output folder (marked "
                   "[output]). Files holding anything but tensors are refused.")
    CATEGORY = "ipadapter/embeds"
    RETURN_TYPES = ("EMBEDS",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        files = embeds_io.list_embeds_files(host.input_directory())
        files += [f"{name} [output]" for name in embeds_io.list_embeds_files(host.output_directory())]
        return {"required": {"embeds": (files, {"tooltip": "Embeds files in ComfyUI's input folder (sub-folders "
                                                "included): .ipadpt and embeds .safetensors; then the embeds files "
                                                "in the output folder, marked [output] (what Save Embeds wrote). "
                                                "Press R after a save to see a new file."})}}

    @classmethod
    def IS_CHANGED(cls, embeds):
        """Reload when the file changes on disk."""
        try:
            stat = os.stat(host.input_file_path(embeds))
        except (OSError, TypeError, IPAdapterError):  # run() reports it
            return ""
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def run(self, embeds):
        tensor, _meta = embeds_io.load_embeds(host.input_file_path(embeds))
        return (tensor,)


NODES = {
    "IPAdapterCombineEmbeds": IPAdapterCombineEmbeds,
    "IPAdapterNoise": IPAdapterNoise,
    "PrepImageForClipVision": PrepImageForClipVision,
    "IPAdapterSaveEmbeds": IPAdapterSaveEmbeds,
    "IPAdapterLoadEmbeds": IPAdapterLoadEmbeds,
}
