"""The ``browser`` fixture: one Chromium page per frontend (``bundled``, ``newest``), shared by the tier.

It is session-scoped and parametrised, so pytest runs every browser test of one frontend before it
starts the next: one ComfyUI server and one page at a time.
"""

from __future__ import annotations

import shutil

import pytest

from tests.browser.frontends import FRONTENDS, browser_on, newest_static, start_newest_server
from tests.host.server_fixtures import demo_server  # noqa: F401  (fixture)


@pytest.fixture(scope="session", params=FRONTENDS)
def browser(request, comfyui_root):
    """A ``frontends.Browser``; ``browser.server`` has the ``object_info`` of the server behind it."""
    if request.param == "bundled":
        yield from browser_on("bundled", request.getfixturevalue("demo_server"))
        return
    _version, static = newest_static()
    server = start_newest_server(comfyui_root, static, request.getfixturevalue("demo_server").models_dir)
    try:
        yield from browser_on("newest", server)
    finally:
        server.stop()
        shutil.rmtree(server.work_root, ignore_errors=True)
