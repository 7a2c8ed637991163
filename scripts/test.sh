#!/usr/bin/env bash
# Set up (idempotent), lint, then run the test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh tests/host -x -q`. Without arguments every tier runs
# (core, parity, host); the host tier needs ComfyUI (COMFYUI_PATH, default ~/ComfyUI).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IPAS_VENV:-$HOME/.cache/ipadapter-suite/venv}"
cd "$ROOT"

bash scripts/setup_env.sh
PY="$VENV/bin/python"

echo "[test] ruff check ."
"$PY" -m ruff check .

echo "[test] pytest ${*:-tests}"
if [[ $# -eq 0 ]]; then
  set -- tests
fi
set +e
"$PY" -m pytest -p tests.host.pytest_plugin "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "[test] pytest collected no tests: treating that as a failure" >&2
fi
exit $status
