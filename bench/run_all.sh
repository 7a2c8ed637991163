#!/usr/bin/env bash
# Run every benchmark in turn (never in parallel: they would time each other), then print one summary.
#
#   bench/run_all.sh                 # the settings recorded in bench/README.md
#   bench/run_all.sh --quick         # fewer rounds, smaller images: a smoke run of every script
#   OUT=/tmp/bench bench/run_all.sh  # where the logs and JSON go (default: $TMPDIR/ipadapter-suite-bench)
#
# Needs ~/ComfyUI (or COMFYUI_PATH) and the venv from scripts/setup_env.sh. requeue.py's cold first runs
# evict the page cache, which needs root; without it they are reported as not dropped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$HOME/.cache/ipadapter-suite/venv/bin/python}"
OUT="${OUT:-${TMPDIR:-/tmp}/ipadapter-suite-bench}"
COMFY="${COMFYUI_PATH:-$HOME/ComfyUI}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--quick" ]]; then
  SITES=(--family sd15 --rounds 3 --step-rounds 1)
  IN_STEP=(--rounds 1)
  FEW=(--repeats 3)
  REQUEUE=(--size 64 --steps 2 --requeues 2 --processes 1 --cache warm)
  REQUEUE_LARGE=(--size 128 --steps 2 --requeues 1 --processes 1 --cache warm)
  E2E=(--size 64 --steps 2 --rounds 1)
  DIT=(--image-tokens 256 --rounds 1 --sd3-rounds 1)
else
  SITES=()
  IN_STEP=()
  FEW=()
  REQUEUE=(--size 64 --steps 2)
  REQUEUE_LARGE=(--size 256 --steps 4 --requeues 3 --processes 1)
  E2E=(--size "${E2E_SIZE:-256}" --steps "${E2E_STEPS:-4}" --rounds "${E2E_ROUNDS:-2}")
  DIT=(--model)
fi

run() {  # label, script, then the script's arguments
  local label="$1" script="$2"; shift 2
  local extra=(--json "$OUT/$label.json")
  [[ "$script" == few_tokens ]] || extra+=(--comfyui "$COMFY")
  echo "[bench] $label: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  (cd "$HERE" && "$PY" "$script.py" "${extra[@]}" "$@") >"$OUT/$label.log" 2>&1 || {
    echo "[bench] $label FAILED; log: $OUT/$label.log" >&2
    tail -20 "$OUT/$label.log" >&2
    return 1
  }
}

echo "[bench] machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), logs in $OUT" >&2
status=0
run patch_sites patch_sites "${SITES[@]}" || status=1
run in_step in_step "${IN_STEP[@]}" || status=1
run few_tokens few_tokens "${FEW[@]}" || status=1
run clone_cost clone_cost || status=1
run requeue requeue "${REQUEUE[@]}" || status=1
run requeue_large requeue "${REQUEUE_LARGE[@]}" || status=1
run end_to_end end_to_end "${E2E[@]}" || status=1
run dit_step dit_step "${DIT[@]}" || status=1

# One summary: each script's report (everything from its title line on).
for label in patch_sites in_step few_tokens clone_cost requeue requeue_large end_to_end dit_step; do
  echo
  echo "==================== $label ===================="
  sed -n '/^IPAdapter Suite:/,$p' "$OUT/$label.log" | grep -v '^wrote '
done
exit $status
