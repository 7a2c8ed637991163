"""Command-line tools for IPAdapter Suite: run saved workflows on a ComfyUI server, and a one-command demo.

``python -m ipadapter_cli run WORKFLOW.json`` and ``python -m ipadapter_cli demo``; see docs/running.md.
Plain Python plus ``requests``: nothing here imports ComfyUI.
"""

from .convert import ConversionError, convert

__all__ = ["ConversionError", "convert"]
