"""Walking a folder that strangers may fill: bounded, loop-free, and never raising.

ComfyUI's input and output folders take uploads from anyone who reaches a ``--listen`` server, and
model folders hold whatever was downloaded. A listing runs on the server's event loop (``/object_info``),
so it must end quickly whatever is there: symlinked folders are followed once (a loop is cut where it
closes), depth and entry count are bounded, only regular files are reported (a FIFO would block a read),
and an unreadable folder is skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

MAX_DEPTH = 12  # folders below the root
MAX_ENTRIES = 20_000  # directory entries looked at, per walk


def walk_files(root: str, extensions: tuple[str, ...] = (), max_depth: int = MAX_DEPTH,
               max_entries: int = MAX_ENTRIES) -> Iterator[str]:
    """Full paths of the regular files under ``root`` whose lower-case name ends with one of ``extensions``
    (any file when empty), folders in sorted order; stops quietly at the bounds."""
    try:
        first = os.stat(root)
    except (OSError, ValueError):
        return
    if not stat.S_ISDIR(first.st_mode):
        return
    seen = {(first.st_dev, first.st_ino)}
    stack: list[tuple[str, int]] = [(root, 0)]
    budget = max_entries
    while stack and budget > 0:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (OSError, ValueError):
            continue
        subfolders = []
        for entry in entries[:budget]:
            budget -= 1
            try:
                info = entry.stat()  # follows symlinks; a dangling one raises
            except (OSError, ValueError):
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if depth < max_depth and key not in seen:
                    seen.add(key)
                    subfolders.append((entry.path, depth + 1))
            elif stat.S_ISREG(info.st_mode) and (not extensions or entry.name.lower().endswith(extensions)):
                yield entry.path
        stack.extend(reversed(subfolders))
