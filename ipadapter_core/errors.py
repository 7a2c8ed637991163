"""The one exception type of the pack.

Every message answers four questions a user has when a graph fails: which node, which input or
file, what was expected, and what to do now. Nodes fill in ``node`` (see ``nodes/base.py``); the
core fills in the rest, so a message reads the same wherever the mistake is caught.
"""

from __future__ import annotations


class IPAdapterError(Exception):
    """A mistake the user can fix, explained in plain words."""

    # ComfyUI shows "<module>.<class>" as the error type; the pack's import path is a long temp-like name.
    __module__ = "IPAdapterSuite"

    def __init__(
        self,
        problem: str,
        *,
        expected: str | None = None,
        fix: str | None = None,
        input: str | None = None,
        node: str | None = None,
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.fix = fix
        self.input = input
        self.node = node
        super().__init__(self._render())

    def _render(self) -> str:
        where = " / ".join(p for p in (self.node, f"input '{self.input}'" if self.input else None) if p)
        parts = [f"[{where}] {self.problem}" if where else self.problem]
        if self.expected:
            parts.append(f"Expected: {self.expected}")
        if self.fix:
            parts.append(f"What to do: {self.fix}")
        return "\n".join(parts)

    def at(self, node: str | None = None, input: str | None = None) -> IPAdapterError:
        """Fill in the node and input if the raiser could not know them; returns self."""
        if node and not self.node:
            self.node = node
        if input and not self.input:
            self.input = input
        self.args = (self._render(),)
        return self

    def __str__(self) -> str:
        return self._render()
