"""Install a ComfyUI checkout's requirements.txt as it is, and carry on past what cannot install here.

    python scripts/install_host_requirements.py COMFYUI_ROOT [EXTRA_REQUIREMENT ...]

Why: newer ComfyUI requirement files name packages (comfy-kitchen, comfy-aimdo, comfy-angle ...) that may have no
wheel for a CPU-only runner. The whole file is tried first (one pip run, fast); if that fails, one requirement at a
time, printing ``[setup] could not install <req>: <reason>`` for each that fails. Then, only if something failed,
the host is imported the way ``main.py`` needs it; if that import fails, we stop and name the missing requirement(s).

torch and torchvision stay at the versions installed before (a constraints file), so an unpinned ``torch`` line is
already satisfied and no other requirement can swap the torch build.

``IPAS_PIP`` (a shell-quoted command, default ``<this python> -m pip --disable-pip-version-check -q``) lets a
test substitute a fake pip. Exit status: 0 installed (maybe partly, the host still imports), 1 the host cannot
start without what failed, 2 bad arguments.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

PINNED = ("torch", "torchvision")
# What main.py imports before it serves anything (nodes pulls in comfy.sd, the model code and attention).
SMOKE_MODULES = ("comfy.cli_args", "comfy.model_management", "comfy.model_patcher", "nodes")
SMOKE_TIMEOUT_S = 300


def say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def pip_command() -> list[str]:
    """``$IPAS_PIP`` split like a shell would, else this interpreter's pip."""
    custom = os.environ.get("IPAS_PIP", "").strip()
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def read_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(requirements, pip options) of a requirements file; comments and blank lines dropped."""
    requirements, options = [], []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            options.extend(shlex.split(line))
        else:
            requirements.append(line)
    return requirements, options


def requirement_name(requirement: str) -> str:
    """The normalized project name: ``comfy-aimdo==0.5.5`` -> ``comfy-aimdo``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.strip().lower()


def pinned_constraints(folder: Path) -> list[str]:
    """pip arguments that keep the installed torch/torchvision (none when neither is installed)."""
    pins = []
    for name in PINNED:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")  # `==2.14.1` also matches the local build 2.14.1+cu130
    if not pins:
        return []
    constraints = folder / "pinned.txt"
    constraints.write_text("\n".join(pins) + "\n")
    return ["-c", str(constraints)]


def short_reason(output: str) -> str:
    """The first informative ``ERROR:`` line of pip's output, shortened."""
    errors = [line[len("ERROR:"):].strip() for line in output.splitlines() if line.startswith("ERROR:")]
    errors = [e for e in errors if not e.startswith("Ignored the following")] or errors
    reason = errors[0] if errors else (output.strip().splitlines() or ["pip failed without a message"])[-1]
    reason = re.sub(r"\s*\(from versions: [^)]*\)$", "", reason)  # the list of every release is noise here
    return reason if len(reason) <= 200 else reason[:197] + "..."


def pip_install(pip: list[str], args: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run([*pip, "install", *args], capture_output=True, text=True)
    except OSError as error:
        return False, f"cannot run pip ({' '.join(pip)}): {error}"
    return done.returncode == 0, done.stdout + done.stderr


def install(requirements_file: Path, extras: list[str], pip: list[str]) -> list[tuple[str, str]]:
    """Install everything that can be; return (requirement, reason) for each that could not."""
    requirements, options = read_requirements(requirements_file)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = pinned_constraints(Path(tmp))
        ok, output = pip_install(pip, ["-r", str(requirements_file), *extras, *constraints])
        if ok:
            return []
        say(f"installing them all at once failed ({short_reason(output)}); trying one requirement at a time")
        failed = []
        for requirement in [*requirements, *extras]:
            ok, output = pip_install(pip, [requirement, *options, *constraints])
            if not ok:
                failed.append((requirement, short_reason(output)))
                say(f"could not install {requirement}: {failed[-1][1]}")
        return failed


def smoke_import(comfy_root: Path) -> str | None:
    """Import what ComfyUI needs to start, in a fresh interpreter; the error text, or None when it worked."""
    code = (
        "import importlib, sys\n"
        "from comfy.cli_args import args\n"
        "args.cpu = True\n"
        f"for name in {SMOKE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # our repo's nodes/ must not shadow nodes.py
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=comfy_root, env=env, capture_output=True,
                              text=True, timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"importing {', '.join(SMOKE_MODULES)} took over {SMOKE_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def blame(error: str, failed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The failed requirement(s) the import error points at (by module name), else all of them."""
    missing = re.search(r"No module named '([^'.]+)", error)
    if missing:
        module = requirement_name(missing.group(1))
        named = [item for item in failed if requirement_name(item[0]) == module]
        if named:
            return named
    return failed


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    comfy_root = Path(argv[0]).resolve()
    requirements_file = comfy_root / "requirements.txt"
    if not requirements_file.is_file():
        print(f"[setup] error: expected a ComfyUI checkout with requirements.txt at {comfy_root}; "
              "set COMFYUI_PATH to your ComfyUI folder", file=sys.stderr)
        return 2
    failed = install(requirements_file, argv[1:], pip_command())
    if not failed:
        return 0
    error = smoke_import(comfy_root)
    if error is None:
        say(f"ComfyUI at {comfy_root} imports without: {', '.join(req for req, _ in failed)}")
        return 0
    culprits = "; ".join(f"{req} ({reason})" for req, reason in blame(error, failed))
    print(f"[setup] error: ComfyUI at {comfy_root} cannot start without {culprits}.\n"
          f"[setup] importing {', '.join(SMOKE_MODULES)} failed with: {error}\n"
          "[setup] install that requirement by hand (pip install ...) in this venv, or use a ComfyUI whose "
          "requirements install on this machine, then run scripts/setup_env.sh again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
