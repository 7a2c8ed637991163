"""Loader nodes: the IP-Adapter model loader and the unified (preset) loader."""

from __future__ import annotations

import os

from ..ipadapter_core import config
from ..ipadapter_core.dit.siglip_head import read_head_tensors
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.presets import find_file, not_found, preset_entry
from . import base, host
from .model_family import REFINER_FIX, describe_context
from .model_family import model_family as model_family_of
from .pipeline import CLIP_VISIONS, Pipeline, load_adapter


class IPAdapterModelLoader(base.Node):
    DISPLAY_NAME = "IPAdapter Model Loader"
    DESCRIPTION = "Load an IP-Adapter file from models/ipadapter. The model kind is read from the file's content."
    CATEGORY = "ipadapter/loaders"
    RETURN_TYPES = ("IPADAPTER",)
    RETURN_NAMES = ("IPADAPTER",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ipadapter_file": (host.list_files(host.FOLDER), {
            "tooltip": "An IP-Adapter file (.safetensors preferred) from models/ipadapter or extra_model_paths."})}}

    def run(self, ipadapter_file):
        path = host.full_path(host.FOLDER, ipadapter_file, input="ipadapter_file")
        if path is None:
            raise IPAdapterError(
                f"'{ipadapter_file}' is not in the ipadapter folders "
                f"({'; '.join(host.folder_paths_for(host.FOLDER))}).",
                expected="a file listed in models/ipadapter", fix="Put the file there and press 'Refresh'.",
                input="ipadapter_file",
            )
        try:
            adapter = load_adapter(path)
        except IPAdapterError as exc:
            raise exc.at(input="ipadapter_file") from None
        return (Pipeline(adapter=adapter, adapter_file=path),)


def model_family(model) -> str:
    """The preset family of the connected model: sd15, sdxl (and Kolors), flux or sd3."""
    family = model_family_of(model)
    if family is not None:
        return family
    ctx = host.context_dim(model)
    fix = REFINER_FIX if ctx == 1280 else "Use an SD1.5, SDXL, Flux.1 or SD3.5-Large model."
    raise IPAdapterError(f"The unified loader has presets for SD1.5, SDXL, Flux.1 and SD3.5; the model is "
                         f"{describe_context(ctx)}.", expected="an SD1.5, SDXL, Flux.1 or SD3.5 model", fix=fix,
                         input="model")


class IPAdapterUnifiedLoader(base.Node):
    DISPLAY_NAME = "IPAdapter Unified Loader"
    DESCRIPTION = ("Pick a preset: the loader finds the adapter for your checkpoint's family and the CLIP vision it "
                   "needs, and checks both by content.")
    RETURN_TYPES = ("MODEL", "IPADAPTER")
    RETURN_NAMES = ("model", "ipadapter")

    @classmethod
    def presets(cls) -> list[str]:
        community = config.load_config().get("community_presets", [])
        return [name for name in config.preset_names() if name not in community]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": base.MODEL,
                "preset": (cls.presets(), {"tooltip": "Which adapter to use; the file is chosen for the "
                           "model's family (SD1.5, SDXL, Flux.1 or SD3.5)."}),
            },
            "optional": {"ipadapter": ("IPADAPTER", {"tooltip": "Chain loaders: encoders already loaded are reused."})},
        }

    def run(self, model, preset, ipadapter=None):
        entry = preset_entry(preset, model_family(model))
        chained = ipadapter if isinstance(ipadapter, Pipeline) else Pipeline()
        adapter_path = self._find(host.FOLDER, "IP-Adapter", entry.patterns, entry.file, entry.url)
        adapter = load_adapter(adapter_path)
        problem = entry.content_problem(adapter.kind)
        if problem:
            raise IPAdapterError(
                f"'{os.path.basename(adapter_path)}' matches the preset's file name, but {problem}.",
                expected=f"{entry.file}", fix=f"Replace the file with {entry.file} from {entry.url}.", input="preset",
            )
        encoder = config.encoders()[entry.encoder]
        if chained.clip_vision is not None and chained.clip_vision_file and \
                find_file([os.path.basename(chained.clip_vision_file)], [encoder["pattern"]]):
            cv_path, clip_vision = chained.clip_vision_file, chained.clip_vision
        else:
            cv_path = self._find("clip_vision", "CLIP vision", [encoder["pattern"]], encoder["file"], encoder["url"],
                                 prefer_head=adapter.kind.encoder_output == "siglip_pooled")
            clip_vision = CLIP_VISIONS.get(cv_path, host.load_clip_vision)
        return (model, chained.with_(adapter=adapter, adapter_file=adapter_path, clip_vision=clip_vision,
                                     clip_vision_file=cv_path))

    @staticmethod
    def _find(folder_key: str, what: str, patterns, file: str, url: str, prefer_head: bool = False) -> str:
        """The first file matching the preset's patterns; with ``prefer_head`` (InstantX Flux), the first
        SigLIP file that also holds the pooling head, if any does (a headless rehost may sort first)."""
        names = host.list_files(folder_key)
        found = find_file(names, patterns)
        if found is None:
            raise not_found(what, folder_key, host.folder_paths_for(folder_key), names, patterns, file, url)
        if prefer_head:
            matching = [n for n in sorted(names) if find_file([n], patterns)]
            found = next((n for n in matching if read_head_tensors(host.full_path(folder_key, n)) is not None), found)
        return host.full_path(folder_key, found)


class IPAdapterUnifiedLoaderCommunity(IPAdapterUnifiedLoader):
    """The unified loader's logic over the community presets (models_config.yaml ``community_presets``)."""

    DISPLAY_NAME = "IPAdapter Unified Loader Community"
    DESCRIPTION = ("Community adapters by preset: ostris' composition adapter (SD1.5/SDXL) and Kolors "
                   "IP-Adapter-Plus (Kolors checkpoints, CLIP ViT-L-336).")
    CATEGORY = "ipadapter/loaders"

    @classmethod
    def presets(cls) -> list[str]:
        return list(config.load_config().get("community_presets", []))


NODES = {"IPAdapterUnifiedLoader": IPAdapterUnifiedLoader, "IPAdapterModelLoader": IPAdapterModelLoader,
         "IPAdapterUnifiedLoaderCommunity": IPAdapterUnifiedLoaderCommunity}
