"""What the Comfy Registry reads from pyproject.toml ([tool.comfy], [project.urls]) holds together.

`comfy node validate` (comfy-cli) drops a requires-comfyui whose parts are not major.minor.patch, and
the registry shows the Icon URL's picture: it must be a PNG of this repository.
"""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RAW = "https://raw.githubusercontent.com/ipadapter-suite/ipadapter-suite/main/"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_icon_is_a_png_of_this_repository():
    icon = _pyproject()["tool"]["comfy"]["Icon"]
    assert icon.startswith(RAW), icon
    path = ROOT / icon.removeprefix(RAW)
    assert path.is_file(), f"{icon} names {path}, which the repository lacks"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 100_000


def test_requires_comfyui_is_in_the_registry_format():
    spec = _pyproject()["tool"]["comfy"]["requires-comfyui"]
    parts = spec.split(",")
    assert parts and all(re.fullmatch(r"(==|>=|<=|!=|~=|>|<)?\d+\.\d+\.\d+", p.strip()) for p in parts), spec


def test_registry_fields_are_filled():
    project = _pyproject()["project"]
    comfy = _pyproject()["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert {"Repository", "Homepage", "Documentation", "Issues"} <= set(project["urls"])
    assert "Flux" in project["description"] and "SD3.5" in project["description"]
