"""Test configuration shared by every tier.

* The repo root goes on ``sys.path`` so core and parity tests import ``ipadapter_core`` directly.
* ``comfyui_root`` finds a ComfyUI checkout (``COMFYUI_PATH``, else ``~/ComfyUI``). Without one, the
  host tier (``tests/host``) is not collected and one line says so; every other tier still runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_TIERS = (REPO_ROOT / "tests" / "host", REPO_ROOT / "tests" / "browser")  # both need a ComfyUI checkout
HOST_SKIP_REASON = ("host and browser tiers skipped: no ComfyUI found; clone it "
                    "(git clone https://github.com/Comfy-Org/ComfyUI ~/ComfyUI) or set COMFYUI_PATH to your checkout")

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def find_comfyui() -> Path | None:
    """The ComfyUI checkout to test against, or None: ``$COMFYUI_PATH``, else ``~/ComfyUI``."""
    configured = os.environ.get("COMFYUI_PATH")
    candidate = Path(configured).expanduser() if configured else Path.home() / "ComfyUI"
    if (candidate / "nodes.py").is_file() and (candidate / "comfy").is_dir():
        return candidate.resolve()
    return None


def _in_host_tier(path: Path) -> bool:
    resolved = Path(path).resolve()
    return any(resolved == tier or tier in resolved.parents for tier in HOST_TIERS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that samples a model for several seconds")
    config._ipas_host_skipped = False  # set when the host tier is left out


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if find_comfyui() is None and _in_host_tier(collection_path):
        config._ipas_host_skipped = True
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str:
    root = find_comfyui()
    return f"ComfyUI: {root}" if root else HOST_SKIP_REASON


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if config._ipas_host_skipped:
        terminalreporter.write_line(f"SKIPPED {HOST_SKIP_REASON}", yellow=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Asking only for the host tier without ComfyUI is a deliberate skip, not "no tests found".
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config._ipas_host_skipped:
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(scope="session")
def comfyui_root() -> Path:
    root = find_comfyui()
    if root is None:
        pytest.skip(HOST_SKIP_REASON)
    return root
