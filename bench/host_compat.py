"""Bridges over ComfyUI versions for the benches and the test harness (feature-detected, never by version string)."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

# Every cache size the newer executor reads; 0 = the server's defaults (no LRU, no RAM-pressure limit).
NEWER_CACHE_ARGS = {"lru": 0, "ram": 0, "ram_inactive": 0}


def prompt_executor(execution: ModuleType, server: Any) -> Any:
    """A ``PromptExecutor`` with the classic cache, as the server builds one.

    Newer ComfyUI (execution.py, 2026: ``__init__(server, cache_type, cache_args, ...)``) reads
    ``self.cache_args["ram"]`` in ``execute_async`` unconditionally, so leaving ``cache_args`` out
    fails with a TypeError there; 0.3.64 has no such parameter (``cache_size`` instead).
    """
    kwargs: dict[str, Any] = {"cache_type": execution.CacheType.CLASSIC}
    if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:
        kwargs["cache_args"] = dict(NEWER_CACHE_ARGS)
    return execution.PromptExecutor(server, **kwargs)


def no_api_nodes(args: Any) -> None:
    """No partner (API) nodes. cli_args @03294572 maps ``disable_api_nodes`` to ``offline`` and
    ``disable_partner_nodes`` only while parsing, so on newer hosts setting it afterwards changes nothing:
    set those too where they exist."""
    args.disable_api_nodes = True
    for newer in ("offline", "disable_partner_nodes"):
        if hasattr(args, newer):
            setattr(args, newer, True)
