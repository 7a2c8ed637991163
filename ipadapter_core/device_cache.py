"""Small per-device caches that several sampler threads may use at once.

A patch caches what it derives from its constants (K/V laid out for a batch, a resized mask) per
device and dtype. On a multi-GPU host (ComfyUI's MultiGPU nodes, 2026: ``multigpu_clones`` +
``_calc_cond_batch_multigpu``) every device copy of a model shares one patch object, because
``clone()`` no longer deep-copies it (ComfyUI PR #12382), and the copies sample in a thread pool.
So the cache takes a lock around its dict, and a move to one GPU does not drop another GPU's entries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch


class DeviceCache:
    """``get(key, make)``: the cached value, or ``make()`` stored under ``key``.

    ``device_at`` is the position of the device in every key. Past ``limit`` entries the cache starts
    over (layouts rarely change within a run). Writes take the lock; ``make`` runs outside it: two
    threads may both build a missing entry, and the first one stored wins, so every caller sees one
    value per key.
    """

    def __init__(self, device_at: int, limit: int = 8) -> None:
        self.device_at = device_at
        self.limit = limit
        self._items: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        hit = self._items.get(key)  # one atomic dict read: the per-step path takes no lock on a hit
        if hit is not None:
            return hit
        value = make()
        with self._lock:
            if key not in self._items and len(self._items) >= self.limit:
                self._items.clear()
            return self._items.setdefault(key, value)

    def moved_to(self, device: torch.device | str) -> None:
        """The model moved to ``device``: drop entries on devices of another type.

        Loading on a GPU drops the CPU copies and offloading to the CPU drops the GPU copies, as a
        single-device host expects; entries on another GPU stay, since its copy of the model may be
        sampling right now.
        """
        kind = torch.device(device).type
        with self._lock:
            for key in [k for k in self._items if torch.device(k[self.device_at]).type != kind]:
                del self._items[key]

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)
