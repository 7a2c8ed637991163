"""The frontend extensions in web/ parse as ES modules (a syntax error would silently disable the extension:
ComfyUI's frontend logs it and goes on without it). Needs Node.js; the browser tier then checks behaviour."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
SCRIPTS = sorted(WEB.glob("*.js"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_extension_parses_as_an_es_module(script: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("web syntax check skipped: no Node.js (apt-get install nodejs)")
    module = tmp_path / (script.stem + ".mjs")  # --check reads .js as CommonJS, where import/export fail
    module.write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
    done = subprocess.run([node, "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{script.name} does not parse:\n{done.stderr}"


def test_there_are_extensions_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"ipadapter_suite.js", "ipadapter_notes.js"}
