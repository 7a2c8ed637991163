#!/usr/bin/env bash
# One-command demo: set up the environment (if scripts/setup_env.sh is there), start ComfyUI on
# 127.0.0.1 with this pack, run workflows/ipadapter_sd15_standard.json, save the image, stop ComfyUI.
#
#   bash scripts/demo.sh --demo-models              # random-weight demo models, no downloads
#   bash scripts/demo.sh --comfyui ~/ComfyUI        # your ComfyUI and your models
#   bash scripts/demo.sh --help                     # every option (python -m ipadapter_cli demo --help)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IPAS_VENV:-$HOME/.cache/ipadapter-suite/venv}"

if [[ -f "$ROOT/scripts/setup_env.sh" ]]; then
  IPAS_SETUP_BROWSER=0 bash "$ROOT/scripts/setup_env.sh"  # the demo needs no browser
fi
PY="$VENV/bin/python"
[[ -x "$PY" ]] || PY="${PYTHON:-python3}"
# No cd: relative --out / --image paths stay relative to where the user is.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m ipadapter_cli demo "$@"
