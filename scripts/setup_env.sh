#!/usr/bin/env bash
# Set up the test environment for IPAdapter Suite. Idempotent, and fast when nothing changed.
#
#   IPAS_VENV      virtualenv to create/use   (default ~/.cache/ipadapter-suite/venv)
#   COMFYUI_PATH   ComfyUI checkout whose requirements to install (default ~/ComfyUI, if present)
#   IPAS_PYTHON    interpreter used to create the venv (default python3)
#   IPAS_SETUP_BROWSER=0   skip Chromium and the newest frontend (only the browser tests need them)
#
# Prints one line per step. Installs: torch + torchvision (2.14.1/0.29.1 when available, else the
# newest pair pip finds), the pack's own requirements plus its [test] and [faceid] extras, and
# ComfyUI's requirements.txt as it is, plus requests (scripts/install_host_requirements.py: torch and
# torchvision stay as installed; what cannot install here is reported and skipped if ComfyUI still imports).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IPAS_VENV:-$HOME/.cache/ipadapter-suite/venv}"
BASE_PY="${IPAS_PYTHON:-python3}"
COMFY="${COMFYUI_PATH:-$HOME/ComfyUI}"
TORCH_PIN=(torch==2.14.1 torchvision==0.29.1)

step() { printf '[setup] %s\n' "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating venv at $VENV with $BASE_PY"
  "$BASE_PY" -m venv "$VENV"
else
  step "venv at $VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

comfy_reqs=""
if [[ -f "$COMFY/requirements.txt" ]]; then
  comfy_reqs="$COMFY/requirements.txt"
fi

# Everything the installed set depends on goes into the stamp key.
key="$(
  {
    "$PY" -c 'import sys; print(sys.version)'
    uname -m
    cat "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/install_host_requirements.py" "$ROOT/pyproject.toml" \
      "$ROOT/requirements.txt" 2>/dev/null
    [[ -n "$comfy_reqs" ]] && cat "$comfy_reqs"
    true
  } | sha256sum | cut -c1-16
)"
STAMP="$VENV/.ipas-setup-$key"
installed() {  # are these modules importable? (found, not imported: importing torch takes seconds)
  "$PY" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' "$@"
}
# The newest ComfyUI frontend for the browser tier (its own cache; fast when already there). Only with a
# ComfyUI to serve it, and run on every set-up: a newer frontend release is picked up without a new stamp.
# What only the browser tier needs: Debian's Chromium (to drive the real frontend headless) and the newest
# ComfyUI frontend (its own cache; fast when already there). Only with a ComfyUI to serve it, and run on
# every set-up, so a later `scripts/test.sh` gets them even after the demo (IPAS_SETUP_BROWSER=0) set up.
BROWSER="${IPAS_SETUP_BROWSER:-1}"
browser_tools() {
  [[ -n "$comfy_reqs" && "$BROWSER" != 0 ]] || return 0
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    step "installing Debian's chromium for the browser test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      step "chromium could not be installed; the browser test will be skipped"
    fi
  fi
  bash "$ROOT/scripts/setup_frontend.sh" "$PY"
}
if [[ -f "$STAMP" ]] && installed torch torchvision pytest ruff; then
  step "up to date (stamp $key); nothing to install"
  browser_tools
  exit 0
fi

step "upgrading pip"
"${PIP[@]}" install --upgrade pip >/dev/null

if installed torch torchvision; then
  step "torch already installed: $("$PY" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)')"
elif "${PIP[@]}" install "${TORCH_PIN[@]}"; then
  step "installed ${TORCH_PIN[*]}"
else
  step "${TORCH_PIN[*]} not available here; installing the newest torch + torchvision pip finds"
  "${PIP[@]}" install torch torchvision
fi

# The pack: runtime requirements plus the test and faceid extras, read from pyproject.toml
# (the flat repo layout is not an installable distribution, so the extras are installed directly).
mapfile -t extras < <("$PY" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
optional = project.get("optional-dependencies", {})
for name in ("test", "faceid"):
    for req in optional.get(name, []):
        print(req)
PYEOF
)
step "installing pack requirements and extras [test,faceid]: ${#extras[@]} packages"
"${PIP[@]}" install -r "$ROOT/requirements.txt" "${extras[@]}"

if [[ -n "$comfy_reqs" ]]; then
  step "installing ComfyUI requirements from $comfy_reqs (torch/torchvision kept as installed) + requests"
  "$PY" "$ROOT/scripts/install_host_requirements.py" "$COMFY" requests
else
  step "no ComfyUI at $COMFY (set COMFYUI_PATH); skipping its requirements, the host tier will be skipped"
fi

browser_tools
rm -f "$VENV"/.ipas-setup-*
touch "$STAMP"
step "done (stamp $key)"
