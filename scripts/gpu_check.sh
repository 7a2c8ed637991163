#!/usr/bin/env bash
# The GPU check (issue 15), in one call on a bare CUDA machine: sets up from what it carries, runs every
# check of bench/gpu_check.py, and writes OUT/summary.json, OUT/summary.md and one log per check.
#
#   here, once, with network:      bash scripts/gpu_carry.sh          (fills the git-ignored .gpu_carry/)
#   on the GPU machine:            bash scripts/gpu_check.sh "$OUT"   (device run, carry [".gpu_carry"])
#   rehearsal on this CPU machine: bash scripts/gpu_check.sh OUT --rehearse
#
# What travels: the repository (2.6 MB) + .gpu_carry (ComfyUI 0.3.64 source, 4 MB; 10 wheels, 38 MB) =
# 44.0 MiB of the 64 MiB limit (measured by gpu_carry.sh on 2026-12-03; it writes .gpu_carry/SIZE).
# Time: not yet run on a GPU (no machine was lent to the session that wrote it). The rehearsal (every
# check in its CPU form, reduced models; 2026-12-03, 2-core development VM, other jobs running) took
# 332 s + 42 s for the DiT check added after it. Budget on the H200: under 8 minutes with set-up, leaving
# the rest of the 15 for one rerun; each check has its own time limit in bench/gpu_check.py.
# Without a CUDA device (and without --rehearse) it prints one line and exits 0.
set -uo pipefail

OUT="${1:?usage: bash scripts/gpu_check.sh OUT [--rehearse]}"
REHEARSE="${2:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu_carry"
PY="${IPAS_GPU_PYTHON:-python3}"
[[ "$REHEARSE" == "--rehearse" ]] && PY="${IPAS_VENV:-$HOME/.cache/ipadapter-suite/venv}/bin/python"

if [[ "$REHEARSE" != "--rehearse" ]] && \
   ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU on this machine (torch sees none); nothing to check"
  exit 0
fi
mkdir -p "$OUT"
started=$(date +%s)

# ComfyUI: the carried source tree, unless COMFYUI_PATH names a checkout.
if [[ -z "${COMFYUI_PATH:-}" || ! -f "${COMFYUI_PATH}/nodes.py" ]]; then
  [[ -f "$CARRY/comfyui.tar.gz" ]] || { echo "gpu_check: no $CARRY/comfyui.tar.gz; run scripts/gpu_carry.sh first" >&2; exit 1; }
  export COMFYUI_PATH="${TMPDIR:-/tmp}/ipas-gpu-comfyui"
  rm -rf "$COMFYUI_PATH" && mkdir -p "$COMFYUI_PATH"
  tar -xzf "$CARRY/comfyui.tar.gz" -C "$COMFYUI_PATH"
fi

# Packages: install from the carried wheels only what this Python cannot import (no network, no deps).
if [[ "$REHEARSE" != "--rehearse" ]]; then
  missing=()
  while read -r pin; do
    dist="${pin%%==*}"
    "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" >/dev/null 2>&1 || missing+=("$pin")
  done < "$CARRY/wheels/requirements.txt"
  if (( ${#missing[@]} )); then
    echo "[gpu_check] installing ${missing[*]}"
    "$PY" -m pip install --quiet --no-index --no-deps --find-links "$CARRY/wheels" "${missing[@]}" \
      || { echo "gpu_check: could not install ${missing[*]} from $CARRY/wheels" >&2; exit 1; }
  fi
fi
echo "[gpu_check] set-up took $(( $(date +%s) - started )) s; ComfyUI at $COMFYUI_PATH"

cd "$ROOT"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 "$PY" bench/gpu_check.py "$OUT" ${REHEARSE:+"$REHEARSE"}
status=$?
echo "[gpu_check] all done in $(( $(date +%s) - started )) s (exit $status); summary in $OUT/summary.md"
exit $status
