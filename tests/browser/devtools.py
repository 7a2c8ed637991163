"""A minimal headless-Chromium driver over the DevTools protocol (no Selenium/Playwright to install).

``open_page`` starts Chromium, opens one page at a ComfyUI URL and waits until the frontend registered
this pack's nodes; ``Page.eval`` evaluates JavaScript there, awaiting promises.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1400,900"]
READY_JS = ("!!(window.app && window.app.graph && window.LiteGraph && window.LiteGraph.registered_node_types"
            " && window.LiteGraph.registered_node_types['IPAdapterApply'])")


def chromium_path() -> str | None:
    """``$IPAS_CHROMIUM``, else the first Chromium on PATH."""
    for name in (os.environ.get("IPAS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Page:
    """Evaluate JavaScript in one page, awaiting promises."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def send(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=120)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def eval(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {json.dumps(result['exceptionDetails'])[:1500]}")
        return result["result"].get("value")


async def _safe_eval(page: Page, expression: str):
    try:
        return await page.eval(expression)
    except RuntimeError:
        return False


async def open_page(chromium: str, url: str, profile: str) -> tuple[subprocess.Popen, aiohttp.ClientSession, Page]:
    """Chromium with one page on ``url``, once the frontend has registered our node types."""
    import aiohttp  # ComfyUI's own dependency: present wherever the browser tier runs

    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    session = None
    try:
        deadline = time.monotonic() + 60
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stderr.readline().decode(errors="replace")
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match.group(1)
            elif not line and proc.poll() is not None:
                break
        if endpoint is None:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        port = endpoint.split(":")[2].split("/")[0]
        session = aiohttp.ClientSession()
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page_target = next(t for t in targets if t.get("type") == "page")
        ws = await session.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Page.navigate", url=url)
        deadline = time.monotonic() + 180
        while not await _safe_eval(page, READY_JS):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the frontend at {url} did not finish loading (no IPAdapterApply node type)")
            await asyncio.sleep(1)
    except BaseException:
        if session is not None:
            await session.close()
        close_chromium(proc)
        raise
    return proc, session, page


def close_chromium(proc: subprocess.Popen | None) -> None:
    """Terminate the Chromium we started (kill after 10 s)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
