"""Host glue for work a user waits on: ComfyUI's progress bar and its Cancel button.

Like ``host.py`` (which is full), this module calls ComfyUI internals: ``comfy.utils.ProgressBar`` and,
through ``host.interrupted``, the interrupt flag that ``POST /interrupt`` (the Cancel button) sets. Node
code loops with ``progress``/``each``; a loop inside ``ipadapter_core`` (which never imports ComfyUI)
takes a ``(done, total)`` callback made by ``reporter``.

Under the server, ComfyUI's progress hook sends a websocket ``progress`` message for the running node
and itself raises ``InterruptProcessingException`` once Cancel was pressed; ``interrupted()`` makes the
same check where no bar advances (in-process runs have no hook).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import comfy.utils

from .host import interrupted

T = TypeVar("T")

__all__ = ["Progress", "each", "interrupted", "progress", "reporter"]


class Progress:
    """A bar of ``total`` steps on the running node. A one-step job gets no bar: there is nothing to show
    between its start and its end, and every encode would otherwise flash one."""

    def __init__(self, total: int) -> None:
        self.total = max(int(total), 0)
        self.done = 0
        self._bar = comfy.utils.ProgressBar(self.total) if self.total > 1 else None

    def update(self, n: int = 1) -> None:
        """``n`` more steps done (the host's hook raises here if Cancel was pressed)."""
        self.reach(self.done + int(n))

    def reach(self, done: int) -> None:
        """``done`` steps done in all."""
        self.done = max(0, min(int(done), self.total))
        if self._bar is not None:
            self._bar.update_absolute(self.done, self.total)


def progress(total: int) -> Progress:
    return Progress(total)


def each(items: Iterable[T], total: int) -> Iterator[T]:
    """``items`` with a bar of ``total`` steps: Cancel is checked before each item, the bar advances after it."""
    bar = Progress(total)
    for item in items:
        interrupted()
        yield item
        bar.update(1)


def reporter() -> Callable[[int, int], None]:
    """A ``(done, total)`` callback for core loops: the bar is made on the first call (when the total is
    known) and Cancel is checked on every call."""
    state: dict[str, Progress] = {}

    def report(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None or bar.total != total:
            bar = state["bar"] = Progress(total)
        bar.reach(done)
        interrupted()

    return report
