#!/usr/bin/env bash
# Fetch a second ComfyUI frontend for the browser tier: the newest `comfyui-frontend-package` on the
# package index (or IPAS_FRONTEND_VERSION), unpacked once into a cache. The browser tests then open
# every workflow both in the host's bundled frontend and in this one (served with --front-end-root).
#
#   bash scripts/setup_frontend.sh [PYTHON]       PYTHON runs pip (default: python3)
#
#   IPAS_FRONTEND_VERSION   a version to use instead of the newest (e.g. 1.47.12)
#   IPAS_FRONTENDS_DIR      the cache (default ~/.cache/ipadapter-suite/frontends)
#
# Leaves <cache>/<version>/comfyui_frontend_package/static and <cache>/newest (the version, one line).
# Without an index it says so in one line and exits 0, keeping the frontend of an earlier run if there is
# one; else the tests skip the newest frontend with the reason kept in <cache>/unavailable.
# Idempotent; an unpacked version is never fetched again.
set -euo pipefail

PY="${1:-python3}"
CACHE="${IPAS_FRONTENDS_DIR:-$HOME/.cache/ipadapter-suite/frontends}"
PACKAGE=comfyui-frontend-package
PIP=("$PY" -m pip --disable-pip-version-check -q --timeout 20 --retries 1)

step() { printf '[setup] %s\n' "$*"; }
unpacked() { [[ -f "$CACHE/$1/comfyui_frontend_package/static/index.html" ]]; }
unavailable() {  # not an error for the setup: keep the last good frontend, else the reason for the tests
  local kept
  kept="$(cat "$CACHE/newest" 2>/dev/null || true)"
  if [[ -n "$kept" ]] && unpacked "$kept"; then
    step "$1; keeping $PACKAGE $kept from $CACHE"
  else
    step "$1; the newest-frontend browser tests will be skipped"
    printf '%s\n' "$1" > "$CACHE/unavailable"
  fi
  exit 0
}

mkdir -p "$CACHE"
version="${IPAS_FRONTEND_VERSION:-}"
if [[ -n "$version" ]]; then
  step "frontend: $PACKAGE $version (IPAS_FRONTEND_VERSION)"
elif listing="$("$PY" -m pip --disable-pip-version-check index versions "$PACKAGE" --timeout 20 --retries 1 2>/dev/null)" \
    && [[ "$listing" =~ $PACKAGE\ \(([^\)]+)\) ]]; then
  version="${BASH_REMATCH[1]}"
  step "frontend: newest $PACKAGE on the index is $version"
else
  unavailable "could not reach a package index to find the newest $PACKAGE (pip index versions failed)"
fi

if unpacked "$version"; then
  step "frontend $version already unpacked in $CACHE/$version"
else
  tmp="$(mktemp -d "$CACHE/.download-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  step "downloading $PACKAGE==$version (no dependencies)"
  if ! "${PIP[@]}" download --no-deps --only-binary=:all: -d "$tmp/wheel" "$PACKAGE==$version" >/dev/null 2>&1; then
    unavailable "pip could not download $PACKAGE==$version"
  fi
  wheel="$(find "$tmp/wheel" -name '*.whl' | head -n 1)"
  [[ -n "$wheel" ]] || unavailable "pip downloaded no wheel for $PACKAGE==$version"
  step "unpacking $(basename "$wheel") into $CACHE/$version"
  "$PY" -m zipfile -e "$wheel" "$tmp/unpacked" || unavailable "could not unpack $(basename "$wheel")"
  [[ -f "$tmp/unpacked/comfyui_frontend_package/static/index.html" ]] \
    || unavailable "$(basename "$wheel") has no comfyui_frontend_package/static/index.html"
  rm -rf "${CACHE:?}/$version"
  mv "$tmp/unpacked" "$CACHE/$version"  # same filesystem: the version folder appears complete or not at all
fi
printf '%s\n' "$version" > "$CACHE/newest"
rm -f "$CACHE/unavailable"
for old in "$CACHE"/*/; do  # other versions (about 120 MB each): only folders this script unpacked
  old="$(basename "$old")"
  if [[ "$old" != "$version" ]] && unpacked "$old"; then
    step "removing frontend $old from $CACHE (no longer the one tested)"
    rm -rf "${CACHE:?}/$old"
  fi
done
step "frontend for the browser tier: $version ($CACHE/newest)"
