"""The ComfyUI layer: node declarations over ipadapter_core, plus host.py for ComfyUI internals.

Each node module exports ``NODES`` ({node type id: class}); ids are the incumbent's, so saved
workflows load unchanged.
"""

from __future__ import annotations

from . import (
    apply,
    apply_variants,
    doctor,
    embeds,
    faceid_nodes,
    host,
    legacy_v1,  # v1-era node ids (workflows saved before the incumbent's 2024-03 rewrite)
    loaders,
    schedule_nodes,
    utility_nodes,
)

host.register_model_folder()

NODE_CLASS_MAPPINGS: dict[str, type] = {}
for _module in (loaders, apply, embeds, apply_variants, faceid_nodes, utility_nodes, schedule_nodes, doctor,
                legacy_v1):
    NODE_CLASS_MAPPINGS.update(_module.NODES)
NODE_DISPLAY_NAME_MAPPINGS = {node_id: cls.DISPLAY_NAME for node_id, cls in NODE_CLASS_MAPPINGS.items()}
