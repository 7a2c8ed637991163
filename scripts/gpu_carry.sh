#!/usr/bin/env bash
# Prepare, on a machine with network access, what scripts/gpu_check.sh carries to the bare GPU machine:
#   .gpu_carry/comfyui.tar.gz   the ComfyUI source tree at $COMFYUI_PATH (no models, outputs or .git)
#   .gpu_carry/wheels/          Python 3.12 x86-64 wheels of what ComfyUI imports and the GPU image lacks,
#                               pinned to the versions of the set-up's venv (the versions the tests run)
#   .gpu_carry/SIZE             what travels (repository + carry), to check against the 64 MiB limit
# The GPU image has torch, numpy, scipy, transformers, aiohttp, safetensors, einops, pytest and hypothesis
# (/work/.library/device/KINDS.md); it lacks the packages below. kornia (Canny nodes) is left out: no
# check needs it, and its Rust wheel is 5 MB. `.gpu_carry/` is git-ignored; name it in the run's carry.
#
#   bash scripts/gpu_carry.sh        then   device run: bash scripts/gpu_check.sh "$OUT"  (carry .gpu_carry)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PY="${IPAS_VENV:-$HOME/.cache/ipadapter-suite/venv}/bin/python"
COMFY="${COMFYUI_PATH:-$HOME/ComfyUI}"
CARRY="$ROOT/.gpu_carry"
PACKAGES=(av pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection
          torchsde trampoline spandrel)

[[ -f "$COMFY/nodes.py" ]] || { echo "gpu_carry: no ComfyUI at $COMFY (set COMFYUI_PATH)" >&2; exit 1; }
rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
tar -czf "$CARRY/comfyui.tar.gz" -C "$COMFY" --exclude=./.git --exclude=./models --exclude=./output \
  --exclude=./input --exclude=./temp --exclude=./user --exclude=./custom_nodes --exclude='__pycache__' .

pins=()
for package in "${PACKAGES[@]}"; do
  pins+=("$package==$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$package")")
done
"$VENV_PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$CARRY/wheels" "${pins[@]}"
printf '%s\n' "${pins[@]}" > "$CARRY/wheels/requirements.txt"

repo_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carry_bytes=$(du -sb "$CARRY" | cut -f1)
total=$(( repo_bytes + carry_bytes ))
printf 'repository %d bytes + carry %d bytes = %.1f MiB (limit 64 MiB)\n' "$repo_bytes" "$carry_bytes" \
  "$(echo "$total / 1048576" | bc -l)" | tee "$CARRY/SIZE"
(( total < 64 * 1048576 )) || { echo "gpu_carry: over the 64 MiB limit" >&2; exit 1; }
