"""IPAdapter Suite core: plain PyTorch, no ComfyUI imports.

Loading and identifying adapter files, projection models, weight types, embedding operations and
the decoupled image cross-attention. ``nodes/`` wraps this for ComfyUI.
"""

__version__ = "0.1.0"
