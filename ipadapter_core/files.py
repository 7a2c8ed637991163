"""Walking a folder that strangers may fill (bounded, loop-free, never raising), and reading the
safetensors headers found there without trusting a byte of them.

ComfyUI's input and output folders take uploads from anyone who reaches a ``--listen`` server, and
model folders hold whatever was downloaded. A listing runs on the server's event loop (``/object_info``),
so it must end quickly whatever is there: symlinked folders are followed once (a loop is cut where it
closes), depth and entry count are bounded, only regular files are reported (a FIFO would block a read),
and an unreadable folder is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterator

MAX_DEPTH = 12  # folders below the root
MAX_ENTRIES = 100_000  # directory entries looked at, per walk (an output folder of many images is common)


def walk_files(root: str, extensions: tuple[str, ...] = (), max_depth: int = MAX_DEPTH,
               max_entries: int = MAX_ENTRIES) -> Iterator[str]:
    """Full paths of the regular files under ``root`` whose lower-case name ends with one of ``extensions``
    (any file when empty), folders in sorted order; stops quietly at the bounds.

    Entries are told apart by the directory's own type field (no ``stat`` per file), so a folder of
    thousands of images costs one ``scandir``; only sub-folders are ``stat``-ed, to cut loops."""
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
                entries = sorted(itertools.islice(it, budget), key=lambda e: e.name)
        except (OSError, ValueError):
            continue
        budget -= len(entries)
        subfolders = []
        for entry in entries:
            if entry.is_dir():  # follows symlinks; False when dangling or unreadable
                if depth >= max_depth:
                    continue
                try:
                    info = entry.stat()
                except (OSError, ValueError):
                    continue
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    subfolders.append((entry.path, depth + 1))
            elif (not extensions or entry.name.lower().endswith(extensions)) and entry.is_file():
                yield entry.path  # regular files only: a FIFO or socket would block a read
        stack.extend(reversed(subfolders))


class UnreadableHeader(ValueError):
    """Why a file has no usable safetensors header: ``reason`` is "short", "too large" or "corrupt"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def safetensors_header(path: str, limit: int) -> tuple[dict, int]:
    """(the JSON header of a safetensors file, its length in bytes); no tensor data is read.

    Any bytes are met with ``UnreadableHeader`` (or ``OSError`` from the disk): a length beyond the file or
    ``limit``, non-UTF-8, nesting deep enough to exhaust the JSON parser, or a header that is not an object.
    The embeds listing and the doctor both read headers of files anyone may have uploaded."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UnreadableHeader("short")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, limit):
            raise UnreadableHeader("too large")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except Exception:  # ValueError, UnicodeDecodeError, RecursionError (absurd nesting)
        header = None
    if not isinstance(header, dict):
        raise UnreadableHeader("corrupt")
    return header, length

