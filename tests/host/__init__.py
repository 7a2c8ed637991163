"""Host tier: the pack loaded into a real ComfyUI (in-process, CPU) and run on small models."""
