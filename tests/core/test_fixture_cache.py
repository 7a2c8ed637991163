"""The fixture cache's version covers every generator module, so an edited generator never reuses stale files."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures import cache

FIXTURES = Path(cache.__file__).resolve().parent


def test_every_module_of_the_fixtures_folder_is_covered():
    covered = {path.name for path in cache.generator_modules()}
    # The two that were once left out: the InsightFace pack and the demo's models.
    assert {"face_models.py", "demo_models.py", "adapters.py", "clip_vision.py", "dit_adapters.py"} <= covered
    assert covered == {path.name for path in FIXTURES.glob("*.py")}


def test_editing_any_generator_changes_the_version(tmp_path, monkeypatch):
    for path in FIXTURES.glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(cache, "generator_modules", lambda: sorted(tmp_path.glob("*.py")))
    before = cache._layout_version()
    for copy in sorted(tmp_path.glob("*.py")):
        text = copy.read_bytes()
        copy.write_bytes(text + b"\n# edited\n")
        assert cache._layout_version() != before, f"editing {copy.name} keeps the old fixture files"
        copy.write_bytes(text)
    assert cache._layout_version() == before
