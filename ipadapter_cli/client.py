"""A small HTTP client for a running ComfyUI server: queue a prompt, wait, fetch the images, listen to its
websocket (progress), interrupt."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests


class ComfyError(RuntimeError):
    """The server refused or failed a prompt; the message is meant for people."""


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: validation failed before anything ran."""

    def __init__(self, message: str, body: dict) -> None:
        super().__init__(message)
        self.body = body


class ExecutionFailed(ComfyError):
    """A node raised while the prompt ran (``execution_error``)."""

    def __init__(self, message: str, details: dict) -> None:
        super().__init__(message)
        self.details = details


def format_rejection(body: dict, prompt: dict | None = None) -> str:
    """One line per problem from a 400 body: the overall error, then each node's errors."""
    error = body.get("error") or {}
    lines = [f"prompt rejected: {error.get('message', 'validation failed')}"
             + (f" ({error['details']})" if error.get("details") else "")]
    for node_id, entry in (body.get("node_errors") or {}).items():
        cls = entry.get("class_type") or ((prompt or {}).get(node_id) or {}).get("class_type", "?")
        for err in entry.get("errors") or []:
            detail = f" [{err['details']}]" if err.get("details") else ""
            lines.append(f"  node {node_id} ({cls}): {err.get('type')}: {err.get('message')}{detail}")
    return "\n".join(lines)


def format_execution_error(data: dict, traceback_lines: int = 12) -> str:
    """``execution_error`` as: which node, which exception, the message, then the traceback's tail."""
    head = (f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
            f"{data.get('exception_type')}: {data.get('exception_message', '').strip()}")
    trace = "".join(data.get("traceback") or []).rstrip().splitlines()[-traceback_lines:]
    return head + ("\n  traceback (last lines):\n    " + "\n    ".join(trace) if trace else "")


class ComfyClient:
    """Talks to one server (``http://127.0.0.1:8188`` style base URL)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8188", timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.session = requests.Session()

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.session.get(self.base + path, params=params or None, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def alive(self) -> bool:
        try:
            return self.session.get(self.base + "/system_stats", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; returns its id or raises PromptRejected with readable node errors."""
        body = {"prompt": prompt, "client_id": self.client_id}
        response = self.session.post(self.base + "/prompt", json=body, timeout=self.timeout)
        if response.status_code == 400:
            data = response.json()
            raise PromptRejected(format_rejection(data, prompt), data)
        response.raise_for_status()
        return response.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict:
        """Poll ``/history/<id>`` until the prompt finished; returns its history entry or raises."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            status = (entry or {}).get("status") or {}
            if entry is not None and (status.get("completed") or status.get("status_str") in ("success", "error")):
                break
            if time.monotonic() > deadline:
                queue = self.get_json("/queue")
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s "
                                   f"(running: {len(queue.get('queue_running', []))}, "
                                   f"pending: {len(queue.get('queue_pending', []))})")
            time.sleep(poll)
        for event, data in status.get("messages") or []:
            if event == "execution_error":
                raise ExecutionFailed(format_execution_error(data), data)
            if event == "execution_interrupted":
                raise ComfyError(f"prompt {prompt_id} was interrupted at node {data.get('node_id')}")
        if status.get("status_str") == "error":
            raise ComfyError(f"prompt {prompt_id} failed: {status}")
        return entry

    def run(self, prompt: dict, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(prompt), timeout=timeout)

    def interrupt(self) -> None:
        """Stop the running prompt (the Cancel button: ``POST /interrupt``)."""
        self.session.post(self.base + "/interrupt", timeout=self.timeout).raise_for_status()

    def listen(self) -> Listener:
        """The server's websocket messages for this client (``with client.listen() as ws: ...``)."""
        return Listener(self)

    @staticmethod
    def images(entry: dict) -> list[dict]:
        """Every image reference ``{filename, subfolder, type}`` in a history entry's outputs."""
        return [img for out in (entry.get("outputs") or {}).values() for img in out.get("images") or []]

    def image_bytes(self, ref: dict) -> bytes:
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        response = self.session.get(self.base + "/view", params=params, timeout=self.timeout)
        response.raise_for_status()
        return response.content

    def save_images(self, entry: dict, out_dir: str | Path) -> list[Path]:
        """Download the entry's output images (not previews) into ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for ref in self.images(entry):
            if ref.get("type", "output") != "output":
                continue
            path = out / Path(ref["filename"]).name
            path.write_bytes(self.image_bytes(ref))
            paths.append(path)
        return paths

    def upload_image(self, path: str | Path, overwrite: bool = True) -> str:
        """Upload a file to the server's input folder; returns the name to give LoadImage."""
        path = Path(path)
        with open(path, "rb") as f:
            response = self.session.post(self.base + "/upload/image", files={"image": (path.name, f)},
                                         data={"overwrite": "true" if overwrite else "false", "type": "input"},
                                         timeout=self.timeout)
        response.raise_for_status()
        data = response.json()
        return f"{data['subfolder']}/{data['name']}" if data.get("subfolder") else data["name"]


class Listener:
    """Websocket messages the server sends this client (``/ws?clientId=``), collected on a background thread.

    ComfyUI sends ``progress`` (``{value, max, node, prompt_id}``), ``executing``, ``execution_interrupted`` ...
    only to the client id that queued the prompt, so connect before queueing. Each message is kept as
    ``(time.monotonic(), type, data)``; binary frames (previews) are skipped.
    """

    def __init__(self, client: ComfyClient, connect_timeout: float = 30.0) -> None:
        self.url = client.base.replace("http", "ws", 1) + f"/ws?clientId={client.client_id}"
        self.connect_timeout = connect_timeout
        self.messages: list[tuple[float, str, dict]] = []
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True,
                                        name="comfy-websocket")

    def __enter__(self) -> Listener:
        self._thread.start()
        if not self._ready.wait(self.connect_timeout) or self._error is not None:
            raise ComfyError(f"could not open the websocket {self.url}: {self._error or 'timed out'}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._ws is not None and not self._loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(timeout=5)
            except Exception:  # already closed by the server
                pass
        self._thread.join(timeout=5)

    async def _main(self) -> None:
        import aiohttp  # ComfyUI's own server dependency: present wherever a ComfyUI runs

        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(self.url, max_msg_size=0) as ws:
                self._loop, self._ws = asyncio.get_running_loop(), ws
                self._ready.set()
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    body = json.loads(msg.data)
                    with self._changed:
                        self.messages.append((time.monotonic(), body.get("type", ""), body.get("data") or {}))
                        self._changed.notify_all()
        except Exception as exc:  # reported by __enter__ (before connecting) or ignored (server stopped)
            self._error = exc
            self._ready.set()

    def of(self, kind: str, prompt_id: str | None = None) -> list[tuple[float, dict]]:
        """(time, data) of every message of type ``kind`` so far (of one prompt, when given)."""
        with self._changed:
            return [(t, d) for t, k, d in self.messages
                    if k == kind and (prompt_id is None or d.get("prompt_id") == prompt_id)]

    def wait_for(self, kind: str, match: Callable[[dict], bool] = lambda d: True,
                 timeout: float = 600.0) -> tuple[float, dict]:
        """The first message of type ``kind`` whose data satisfies ``match`` (waits up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next(((t, d) for t, k, d in self.messages if k == kind and match(d)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({k for _, k, _ in self.messages})
                    raise TimeoutError(f"no '{kind}' message within {timeout:.0f} s (seen: {', '.join(seen)})")
                self._changed.wait(min(left, 1.0))
