"""The IPADAPTER value that travels between nodes, and the file cache behind the loaders."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..ipadapter_core.adapter import IPAdapterModel


@dataclass(frozen=True)
class Pipeline:
    """An adapter plus, when a unified loader made it, the encoders it needs.

    Frozen: a loader that extends a chained pipeline returns a new one, so an upstream node's
    cached output is never modified.
    """

    adapter: IPAdapterModel | None = None
    adapter_file: str | None = None
    clip_vision: Any = None
    clip_vision_file: str | None = None
    insightface: Any = None
    faceid_v2: bool | None = None  # FaceID-Plus v1/v2 share a layout: set by the FaceID preset, else None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_(self, **changes: Any) -> Pipeline:
        return replace(self, **changes)


class FileCache:
    """Loaded models keyed by (path, size, mtime): a changed file is reloaded, an unchanged one is not."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, path: str, load: Callable[[str], Any]) -> Any:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load(path)
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value


ADAPTERS = FileCache()
CLIP_VISIONS = FileCache(capacity=2)


def load_adapter(path: str) -> IPAdapterModel:
    return ADAPTERS.get(path, IPAdapterModel.from_file)
