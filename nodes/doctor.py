"""The doctor node: an installation report shown in the UI (also `python -m ipadapter_cli doctor`)."""

from __future__ import annotations

from ..ipadapter_core import doctor
from . import base, host, host_progress


class IPAdapterDoctor(base.Node):
    DISPLAY_NAME = "IPAdapter Doctor"
    DESCRIPTION = ("Report versions, ONNX Runtime providers, every model file in the ipadapter/clip_vision/loras "
                   "folders identified by content (SD1.5/SDXL/Kolors, Flux.1 XLabs/InstantX and SD3.5 InstantX "
                   "adapters, each with the encoder it needs), and what each unified-loader preset still needs.")
    CATEGORY = "ipadapter/utils"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {}}

    @classmethod
    def IS_CHANGED(cls) -> float:
        return float("nan")  # the folders may have changed: always re-scan

    def run(self) -> dict:
        folders = {key: host.folder_paths_for(key) for key in doctor.FOLDER_KEYS}
        text = doctor.report(folders, host.comfyui_version(), progress=host_progress.reporter())
        return {"ui": {"text": [text]}, "result": (text,)}


NODES = {"IPAdapterDoctor": IPAdapterDoctor}
