"""scripts/install_host_requirements.py with a fake pip and a fake ComfyUI: what cannot install is reported by
name and skipped while the host still imports; when the host needs it, setup stops naming it. No network."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPER = REPO_ROOT / "scripts" / "install_host_requirements.py"

# A pip that "installs" by appending to $FAKE_PIP_LOG and fails for the project named in $FAKE_PIP_FAIL,
# like pip does when no distribution matches (whole-file runs fail too when the file names it).
FAKE_PIP = r'''
import json, os, re, sys
args = sys.argv[1:]
assert args[0] == "install", args
args = args[1:]
reqs, constraints, i = [], None, 0
while i < len(args):
    if args[i] == "-r":
        reqs += [l.split("#")[0].strip() for l in open(args[i + 1]) if l.split("#")[0].strip()]
        i += 2
    elif args[i] == "-c":
        constraints = open(args[i + 1]).read().split()
        i += 2
    else:
        reqs.append(args[i])
        i += 1
fail = os.environ.get("FAKE_PIP_FAIL", "")
bad = [r for r in reqs if fail and re.match(re.escape(fail) + r"\b", r)]
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps({"reqs": reqs, "constraints": constraints, "ok": not bad}) + "\n")
if bad:
    print("ERROR: Ignored the following yanked versions: 0.0.1", file=sys.stderr)
    print(f"ERROR: Could not find a version that satisfies the requirement {bad[0]} (from versions: none)",
          file=sys.stderr)
    print(f"ERROR: No matching distribution found for {bad[0]}", file=sys.stderr)
    sys.exit(1)
'''

REQUIREMENTS = """comfyui-frontend-package==9.9.9
torch
torchvision
alpha>=1.0   # trailing comment
#non essential dependencies:

comfy-broken==0.5.5
beta
"""


def _host(tmp_path: Path, model_patcher: str = "") -> Path:
    """A ComfyUI-shaped folder: the modules the smoke import loads, with ``model_patcher`` as comfy/model_patcher.py."""
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "requirements.txt").write_text(REQUIREMENTS)
    (root / "comfy" / "__init__.py").write_text("")
    (root / "comfy" / "cli_args.py").write_text("import types\nargs = types.SimpleNamespace(cpu=False)\n")
    (root / "comfy" / "model_management.py").write_text("from comfy.cli_args import args\nassert args.cpu\n")
    (root / "comfy" / "model_patcher.py").write_text(model_patcher)
    (root / "nodes.py").write_text("import comfy.model_patcher\n")
    return root


def _run(tmp_path: Path, root: Path, fail: str | None, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    fake = tmp_path / "fake_pip.py"
    fake.write_text(FAKE_PIP)
    log = tmp_path / "pip.log"
    env = {**os.environ, "IPAS_PIP": shlex.join([sys.executable, str(fake)]), "FAKE_PIP_LOG": str(log)}
    env.pop("FAKE_PIP_FAIL", None)
    if fail:
        env["FAKE_PIP_FAIL"] = fail
    done = subprocess.run([sys.executable, str(HELPER), str(root), *extra], env=env, capture_output=True,
                          text=True, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def _installed(calls: list[dict]) -> set[str]:
    return {req for call in calls if call["ok"] for req in call["reqs"]}


def test_everything_installs_in_one_pip_run(tmp_path):
    root = _host(tmp_path, model_patcher="import comfy_broken\n")  # would fail a smoke import: none is run
    done, calls = _run(tmp_path, root, None, "requests")
    assert done.returncode == 0, done.stderr
    assert len(calls) == 1 and calls[0]["ok"]
    assert {"torch", "alpha>=1.0", "comfy-broken==0.5.5", "beta", "requests"} <= _installed(calls)
    assert "could not install" not in done.stdout


def test_torch_and_torchvision_stay_as_installed(tmp_path):
    pytest.importorskip("torch")
    from importlib.metadata import version

    _, calls = _run(tmp_path, _host(tmp_path), None)
    assert f"torch=={version('torch').split('+')[0]}" in calls[0]["constraints"]
    assert f"torchvision=={version('torchvision').split('+')[0]}" in calls[0]["constraints"]


def test_one_failing_requirement_is_named_and_the_rest_installed(tmp_path):
    done, calls = _run(tmp_path, _host(tmp_path), "comfy-broken", "requests")
    assert done.returncode == 0, done.stderr
    assert not calls[0]["ok"]  # the whole file first
    assert "trying one requirement at a time" in done.stdout
    expected = {"comfyui-frontend-package==9.9.9", "torch", "torchvision", "alpha>=1.0", "beta", "requests"}
    assert _installed(calls) == expected
    lines = [line for line in done.stdout.splitlines() if line.startswith("[setup] could not install")]
    reason = "Could not find a version that satisfies the requirement comfy-broken==0.5.5"
    assert lines == [f"[setup] could not install comfy-broken==0.5.5: {reason}"]
    assert "imports without: comfy-broken==0.5.5" in done.stdout


def test_setup_stops_when_the_host_needs_what_failed(tmp_path):
    root = _host(tmp_path, model_patcher="import comfy_broken  # like comfy_aimdo on newer ComfyUI\n")
    done, calls = _run(tmp_path, root, "comfy-broken")
    assert done.returncode == 1
    assert "could not install comfy-broken==0.5.5" in done.stdout
    assert "cannot start without comfy-broken==0.5.5" in done.stderr
    assert "No module named 'comfy_broken'" in done.stderr
    assert "beta" in _installed(calls)


def test_an_import_error_naming_another_module_blames_every_failed_requirement(tmp_path):
    root = _host(tmp_path, model_patcher="import somewhere_else\n")
    done, _ = _run(tmp_path, root, "comfy-broken")
    assert done.returncode == 1
    assert "cannot start without comfy-broken==0.5.5" in done.stderr
    assert "No module named 'somewhere_else'" in done.stderr


def test_no_requirements_file_is_a_usage_error(tmp_path):
    root = _host(tmp_path)
    (root / "requirements.txt").unlink()
    done, calls = _run(tmp_path, root, None)
    assert done.returncode == 2 and calls == []
    assert "requirements.txt" in done.stderr and "COMFYUI_PATH" in done.stderr


def test_setup_env_calls_the_helper_and_parses():
    script = (REPO_ROOT / "scripts" / "setup_env.sh").read_text()
    assert 'install_host_requirements.py" "$COMFY"' in script
    assert subprocess.run(["bash", "-n", str(REPO_ROOT / "scripts" / "setup_env.sh")]).returncode == 0
