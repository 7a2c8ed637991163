"""Start and stop a ComfyUI server (CPU, 127.0.0.1) with this pack loaded from a temporary folder.

The pack is made visible through a ``custom_nodes:`` entry of a generated extra_model_paths.yaml that
points at a temp folder holding a symlink to this repo, so the user's own custom_nodes folder is not
touched. Input, output, temp and user folders are private to the run as well.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .client import ComfyClient

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_LINK = "ipadapter-suite"
# ``insightface`` is the pack's own folder name (nodes/host.py registers it; packs go in <it>/models/<pack>).
MODEL_FOLDERS = ("checkpoints", "diffusion_models", "clip_vision", "ipadapter", "loras", "vae", "embeddings",
                 "insightface")


def find_comfyui(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$COMFYUI_PATH``, else ``~/ComfyUI``; raises if it is not a ComfyUI checkout."""
    root = Path(path or os.environ.get("COMFYUI_PATH") or Path.home() / "ComfyUI").expanduser().resolve()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        raise FileNotFoundError(f"no ComfyUI checkout at {root} (pass --comfyui PATH or set COMFYUI_PATH)")
    return root


def host_has_flag(root: Path, flag: str) -> bool:
    """Does this ComfyUI checkout's ``comfy/cli_args.py`` define ``flag``? Read as text: no import, and no
    version compare (forks and dev builds carry any version)."""
    try:
        text = (root / "comfy" / "cli_args.py").read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"""["']""" + re.escape(flag) + r"""["']""", text) is not None


def offline_flag(root: Path) -> str:
    """No partner (paid API) nodes, no outside requests. cli_args @03294572 turned ``--disable-api-nodes`` into a
    deprecated alias of ``--offline`` (a start-up warning that it "will be removed"); older hosts only know the
    former."""
    return "--offline" if host_has_flag(root, "--offline") else "--disable-api-nodes"


def assets_flags(root: Path) -> list[str]:
    """Newer main.py (@02018c7e) runs an assets system by default: it scans the model folders in the background and
    exits(1) at start-up when alembic/SQLAlchemy are missing. Our short-lived server needs none of it.
    ``--disable-assets`` only exists there: 0.3.64's argparse rejects it."""
    return ["--disable-assets"] if host_has_flag(root, "--disable-assets") else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extra_paths_yaml(custom_nodes: Path, models_dir: Path | None = None) -> str:
    """The yaml: our custom_nodes folder, plus the model sub-folders of ``models_dir`` that exist."""
    lines = ["ipadapter_suite_run:", f"  custom_nodes: {json.dumps(str(custom_nodes))}"]
    if models_dir is not None:
        for folder in MODEL_FOLDERS:
            if (models_dir / folder).is_dir():
                lines.append(f"  {folder}: {json.dumps(str(models_dir / folder))}")
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies (Linux), so no server is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_env() -> dict[str, str]:
    """This environment without the repo on PYTHONPATH: its ``nodes/`` package must not shadow ComfyUI's."""
    env = dict(os.environ)
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO_ROOT]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env


class ComfyServer:
    """``with ComfyServer(root, work_dir, models_dir) as server: server.client.run(prompt)``."""

    def __init__(self, comfyui_root: str | os.PathLike, work_dir: str | os.PathLike,
                 models_dir: str | os.PathLike | None = None, python: str = sys.executable,
                 port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.root = find_comfyui(comfyui_root)
        self.work = Path(work_dir).resolve()
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        self.python = python
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = ComfyClient(self.url)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work / "server.log"
        self.input_dir, self.output_dir = self.work / "input", self.work / "output"

    def _prepare(self) -> Path:
        custom_nodes = self.work / "custom_nodes"
        for folder in (custom_nodes, self.input_dir, self.output_dir, self.work / "temp", self.work / "user"):
            folder.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / PACK_LINK
        if not link.is_symlink():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        config = self.work / "extra_model_paths.yaml"
        config.write_text(extra_paths_yaml(custom_nodes, self.models_dir))
        return config

    def command(self) -> list[str]:
        """The ``main.py`` command line, with the flags this host understands."""
        config = self._prepare()
        # --database-url is accepted by 0.3.64 and by the newest cli_args alike (unused there with --disable-assets).
        return [
            self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", offline_flag(self.root), *assets_flags(self.root),
            "--extra-model-paths-config", str(config),
            "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
            "--temp-directory", str(self.work / "temp"), "--user-directory", str(self.work / "user"),
            "--database-url", "sqlite:///:memory:", *self.extra_args,
        ]

    def start(self, timeout: float = 300.0) -> ComfyServer:
        """Launch ``main.py`` and wait until it answers; raises with the log's tail if it dies or hangs."""
        cmd = self.command()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.client.alive():
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.5)
        return self

    def stop(self, grace: float = 20.0) -> None:
        """Terminate the server we started (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
