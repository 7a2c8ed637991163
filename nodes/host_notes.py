"""Notes for a node's notes box sent while another node runs (e.g. a warning found during sampling).

A node's own notes travel with its result (``{"ui": {"text": [...]}}``). A problem that only shows
while the sampler runs is sent as a websocket message instead, ``ipadapter_suite.notes`` with
``{node, key, text}``; ``web/ipadapter_notes.js`` shows ``text`` in that node's box under ``key``, and an
empty ``text`` clears what ``key`` showed before. Everything here is feature-detected and never raises:
without a server (in-process use) or on a host without these APIs, the log line is all there is.
"""

from __future__ import annotations

import logging

from .host import prompt_server

EVENT = "ipadapter_suite.notes"
log = logging.getLogger("ipadapter_suite")


def executing_node() -> str | None:
    """The id of the node the host is executing now (None outside a prompt or on hosts without it)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # hosts before the execution context (mid 2025)
        return None
    context = get_executing_context()
    return None if context is None else str(context.node_id)


def _client_id(instance) -> str | None:
    """The client that queued the running prompt: a context variable on hosts that run prompts side by
    side (newer ``comfy_execution.utils``), else the server's single ``client_id``."""
    try:
        from comfy_execution import utils
    except ImportError:
        utils = None
    if utils is not None and hasattr(utils, "has_current_client_id") and utils.has_current_client_id():
        return utils.get_current_client_id()
    return getattr(instance, "client_id", None)


def send_notes(node: str | None, key: str, lines: list[str]) -> bool:
    """Show ``lines`` in ``node``'s notes box under ``key`` (none: clear them); False when nothing was sent."""
    if node is None:
        return False
    instance = prompt_server()
    if instance is None or not hasattr(instance, "send_sync"):
        return False
    try:
        instance.send_sync(EVENT, {"node": node, "key": key, "text": list(lines)}, _client_id(instance))
    except Exception as error:  # noqa: BLE001 - a note never stops a run
        log.debug("could not send notes to node %s: %s", node, error)
        return False
    return True
