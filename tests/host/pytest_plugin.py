"""A pytest plugin (``-p tests.host.pytest_plugin``) that keeps pytest from importing the pack itself.

The repo root is a ComfyUI custom node, so it has an ``__init__.py`` that imports ComfyUI. When the
checkout's folder name is a valid identifier (``main``, ``ComfyUI_IPAdapter_suite`` ...), pytest's
package detection walks up to it and imports every test module as ``<folder>.tests...``, which runs
that ``__init__.py`` before any conftest (and fails outside ComfyUI). This registers a bare package
of that name first, so ``<folder>.tests...`` resolves without executing the pack's ``__init__.py``.
It must load before conftest files, hence a ``-p`` plugin rather than conftest code.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _shield_repo_package() -> None:
    name = REPO_ROOT.name
    if not (REPO_ROOT / "__init__.py").is_file() or not name.isidentifier() or name in sys.modules:
        return
    if (REPO_ROOT.parent / "__init__.py").is_file():
        return  # pytest would go further up; nothing we can shield reliably
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(REPO_ROOT)]
    package = types.ModuleType(name, "The repo root seen as a plain namespace during tests (pack not imported).")
    package.__spec__ = spec
    package.__path__ = [str(REPO_ROOT)]
    package.__package__ = name
    sys.modules[name] = package


_shield_repo_package()
