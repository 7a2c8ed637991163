"""IP-Adapters for diffusion transformers (Flux, SD3.5): projections, the SigLIP pooling head, the
per-block image-attention math and the per-application state the host hooks read.

Plain PyTorch like the rest of the core; which module to hook and when is host glue (nodes/dit_hooks.py).
"""
