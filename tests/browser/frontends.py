"""The frontends the browser tier opens workflows in, and the one browser page per frontend.

* ``bundled``: the host's own frontend, served by the shared demo server (``demo_server``).
* ``newest``: the newest ``comfyui-frontend-package`` that ``scripts/setup_frontend.sh`` unpacked into
  the cache, served by a second ComfyServer of the same ComfyUI with ``--front-end-root``. It reads the
  demo server's models (so a graph can run from the page) and has an empty input folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipadapter_cli.server import ComfyServer
from tests.browser.devtools import chromium_path, close_chromium, open_page

FRONTENDS = ("bundled", "newest")
FRONTENDS_DIR = Path(os.environ.get("IPAS_FRONTENDS_DIR") or Path.home() / ".cache" / "ipadapter-suite" / "frontends")
SETUP_HINT = "run `bash scripts/setup_frontend.sh <venv python>` with access to a package index"


def newest_static() -> tuple[str, Path]:
    """(version, static folder) of the frontend setup_frontend.sh prepared; skips with the reason if none."""
    marker = FRONTENDS_DIR / "newest"
    if not marker.is_file():
        why = (FRONTENDS_DIR / "unavailable").read_text(encoding="utf-8").strip() \
            if (FRONTENDS_DIR / "unavailable").is_file() else f"no {marker}"
        pytest.skip(f"newest frontend skipped: {why} ({SETUP_HINT})")
    version = marker.read_text(encoding="utf-8").strip()
    static = FRONTENDS_DIR / version / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        pytest.skip(f"newest frontend skipped: {marker} names {version} but {static} has no index.html ({SETUP_HINT})")
    return version, static


def start_newest_server(comfyui_root: Path, static: Path, models_dir: Path | None = None) -> ComfyServer:
    """A ComfyServer serving ``static`` as its frontend (with its own ``object_info``) and ``models_dir``."""
    work = Path(tempfile.mkdtemp(prefix="ipas-frontend-server-"))
    server = ComfyServer(comfyui_root, work / "server", models_dir, extra_args=("--front-end-root", str(static)))
    try:
        server.start()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    server.object_info = server.client.object_info()
    server.work_root = work
    return server


class Browser:
    """One Chromium page on one frontend: ``load(workflow)`` opens a workflow, ``eval(js)`` runs code."""

    def __init__(self, frontend: str, server: ComfyServer, loop: asyncio.AbstractEventLoop, page) -> None:
        self.frontend, self.server, self.loop, self.page = frontend, server, loop, page
        self.version = self.eval("window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'")

    def eval(self, expression: str):
        return self.loop.run_until_complete(self.page.eval(expression))

    def label(self, name: str) -> str:
        return f"{name} [{self.frontend} frontend {self.version}]"


def browser_on(frontend: str, server: ComfyServer) -> Iterator[Browser]:
    """A generator yielding a ``Browser`` on ``server``'s page; closes Chromium after (for a yield fixture)."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("browser test skipped: no Chromium (apt-get install chromium, or set IPAS_CHROMIUM)")
    loop = asyncio.new_event_loop()
    profile = tempfile.mkdtemp(prefix="ipas-chromium-")
    proc = session = None
    try:
        proc, session, page = loop.run_until_complete(open_page(chromium, server.url, profile))
        yield Browser(frontend, server, loop, page)
    finally:
        if session is not None:
            loop.run_until_complete(session.close())
        close_chromium(proc)
        loop.close()
        shutil.rmtree(profile, ignore_errors=True)


def js(template: str, **values) -> str:
    """``template`` with each ``%(name)s`` replaced by the JSON of ``values[name]``."""
    return template % {k: json.dumps(v) for k, v in values.items()}
