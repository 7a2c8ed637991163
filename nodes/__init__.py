"""The ComfyUI layer: node declarations over ipadapter_core, plus host.py for ComfyUI internals."""

from __future__ import annotations

from . import host
from .apply import IPAdapterAdvanced, IPAdapterEmbeds, IPAdapterSimple
from .embeds import IPAdapterEncoder
from .loaders import IPAdapterModelLoader, IPAdapterUnifiedLoader

host.register_model_folder()

# Node type ids are the incumbent's, so saved workflows load unchanged.
NODES = {
    "IPAdapterUnifiedLoader": IPAdapterUnifiedLoader,
    "IPAdapterModelLoader": IPAdapterModelLoader,
    "IPAdapter": IPAdapterSimple,
    "IPAdapterAdvanced": IPAdapterAdvanced,
    "IPAdapterEmbeds": IPAdapterEmbeds,
    "IPAdapterEncoder": IPAdapterEncoder,
}

NODE_CLASS_MAPPINGS = dict(NODES)
NODE_DISPLAY_NAME_MAPPINGS = {node_id: cls.DISPLAY_NAME for node_id, cls in NODES.items()}
