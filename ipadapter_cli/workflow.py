"""Finding and reading workflow files (a path, or a name from the repo's ``workflows/`` folder)."""

from __future__ import annotations

import json
from pathlib import Path

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"


def workflow_path(name: str) -> Path:
    """``name`` as a path if it exists, else ``workflows/<name>`` (``.json`` optional)."""
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct
    for candidate in (WORKFLOWS_DIR / name, WORKFLOWS_DIR / f"{name}.json"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.name for p in WORKFLOWS_DIR.glob("*.json")))
    raise FileNotFoundError(f"no workflow {name!r} (not a file, not in {WORKFLOWS_DIR}: {shipped})")


def load_workflow(name: str) -> dict:
    with open(workflow_path(name), encoding="utf-8") as f:
        return json.load(f)
