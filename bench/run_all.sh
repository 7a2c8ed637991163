#!/usr/bin/env bash
# Run every benchmark in turn (never in parallel: they would time each other), then print one summary.
#
#   bench/run_all.sh                 # the settings recorded in bench/README.md
#   bench/run_all.sh --quick         # fewer rounds, smaller images: a smoke run of every script
#   OUT=/tmp/bench bench/run_all.sh  # where the logs and JSON go (default: $TMPDIR/ipadapter-suite-bench)
#
# Needs ~/ComfyUI (or COMFYUI_PATH / --comfyui via the per-script options) and the venv from scripts/setup_env.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$HOME/.cache/ipadapter-suite/venv/bin/python}"
OUT="${OUT:-${TMPDIR:-/tmp}/ipadapter-suite-bench}"
COMFY="${COMFYUI_PATH:-$HOME/ComfyUI}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--quick" ]]; then
  SITES=(--rounds 3 --sdxl-rounds 1 --step-rounds 1)
  REQUEUE=(--size 64 --steps 2 --requeues 2)
  E2E=(--size 64 --steps 2 --rounds 1)
else
  SITES=()
  REQUEUE=(--size 256 --steps 4 --requeues 3)
  E2E=(--size "${E2E_SIZE:-512}" --steps "${E2E_STEPS:-2}" --rounds "${E2E_ROUNDS:-2}")
fi

run() {  # name, then the script's arguments
  local name="$1"; shift
  echo "[bench] $name: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  (cd "$HERE" && "$PY" "$name.py" --comfyui "$COMFY" --json "$OUT/$name.json" "$@") >"$OUT/$name.log" 2>&1 || {
    echo "[bench] $name FAILED; log: $OUT/$name.log" >&2
    tail -20 "$OUT/$name.log" >&2
    return 1
  }
}

echo "[bench] machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), logs in $OUT" >&2
status=0
run patch_sites "${SITES[@]}" || status=1
run clone_cost || status=1
run requeue "${REQUEUE[@]}" || status=1
run end_to_end "${E2E[@]}" || status=1

# One summary: each script's report (everything from its title line on).
for name in patch_sites clone_cost requeue end_to_end; do
  echo
  echo "==================== $name ===================="
  sed -n '/^IPAdapter Suite:/,$p' "$OUT/$name.log" | grep -v '^wrote '
done
exit $status
