"""A warning, while sampling, when an ``attn_mask``'s aspect ratio differs from the latent's.

The adapter stretches such a mask to fit (as it always has), but it is usually a wiring mistake. The
apply node cannot see the latent, so the check runs in an ``OUTER_SAMPLE`` wrapper: once per sampling
run, with the noise in hand. It logs the warning and sends it to the applying node's notes box; a run
whose sizes agree clears what an earlier run showed there. The wrapper only reads shapes and calls on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..ipadapter_core.mask_aspect import stretch_warning
from . import base, host
from .host_notes import executing_node, send_notes

WRAPPER_KEY = "ipadapter_suite.mask_aspect"
NOTES_KEY = "mask_aspect"
log = logging.getLogger("ipadapter_suite")


@dataclass(frozen=True)
class MaskCheck:
    """One adapter's mask: its size, and the node (id and display name) and adapter file that applied it."""

    node: str | None
    node_name: str
    adapter: str
    mask_hw: tuple[int, int]

    def warning(self, latent_hw: tuple[int, int]) -> str | None:
        where = ", ".join(([f"node {self.node}"] if self.node is not None else []) + [self.adapter])
        return stretch_warning(self.mask_hw, latent_hw, f"{self.node_name} ({where})")


def latent_size(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    """(height, width) of the image latent being sampled, from ``outer_sample``'s arguments.

    Newer hosts pack several latents into one noise tensor and pass their shapes as ``latent_shapes``;
    the image (or video) latent is the first of them."""
    shapes = kwargs.get("latent_shapes")
    shape = shapes[0] if shapes else getattr(args[0] if args else kwargs.get("noise"), "shape", None)
    if shape is None or len(shape) < 4:
        return None
    return int(shape[-2]), int(shape[-1])


class MaskAspectWatch:
    """The ``OUTER_SAMPLE`` wrapper: every mask check of one model (immutable; stacking makes a new one)."""

    def __init__(self, checks: tuple[MaskCheck, ...]) -> None:
        self.checks = checks

    def with_check(self, check: MaskCheck) -> MaskAspectWatch:
        return self if check in self.checks else MaskAspectWatch(self.checks + (check,))

    def report(self, latent_hw: tuple[int, int]) -> dict[str | None, list[str]]:
        """Log each warning once and send every node its notes (none: clears old ones); returns them."""
        by_node: dict[str | None, list[str]] = {}
        for check in self.checks:
            warning = check.warning(latent_hw)
            lines = by_node.setdefault(check.node, [])
            if warning is not None and f"WARNING: {warning}" not in lines:
                lines.append(f"WARNING: {warning}")
                log.warning("[IPAdapter Suite] %s", warning)
        for node, lines in by_node.items():
            send_notes(node, NOTES_KEY, lines)
        return by_node

    def __call__(self, executor, *args, **kwargs):
        try:
            size = latent_size(args, kwargs)
            if size is not None:
                self.report(size)
        except Exception as error:  # noqa: BLE001 - a warning must never stop a run
            log.debug("mask aspect check skipped: %s", error)
        return executor(*args, **kwargs)


def watch(model, mask: torch.Tensor | None, adapter: str) -> None:
    """Check ``mask`` against the latent each time (an already-cloned) ``model`` is sampled; the warning names
    the node applying it now (id and display name) and the ``adapter`` file."""
    if mask is None:
        return
    try:
        from comfy.patcher_extension import WrappersMP
    except ImportError:
        return
    kind = getattr(WrappersMP, "OUTER_SAMPLE", None)
    if kind is None or not hasattr(model, "add_wrapper_with_key"):  # hosts before model wrappers
        return
    check = MaskCheck(executing_node(), base.running_node() or "IPAdapter", adapter,
                      (int(mask.shape[-2]), int(mask.shape[-1])))
    host.restack_wrapper(model, kind, WRAPPER_KEY, MaskAspectWatch,
                         lambda watcher: watcher.with_check(check) if watcher else MaskAspectWatch((check,)))
