#!/usr/bin/env bash
# Creates .venv with rsneo and everything it needs; installs the system packages (GDAL tools, QGIS for the tests).
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--with-qgis]
set -euo pipefail
cd "$(dirname "$0")/.."

want_qgis=0
[ "${1:-}" = "--with-qgis" ] && want_qgis=1

apt_pkgs=(gdal-bin)
[ "$want_qgis" = 1 ] && apt_pkgs+=(python3-qgis qgis-providers)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.rsneo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing rsneo and its dependencies into .venv (first time: several minutes)"
  .venv/bin/pip install -q --upgrade pip
  # torch and torchvision must match; on x86_64 Linux these releases ship CPU+CUDA in one wheel.
  .venv/bin/pip install -q "torch>=2.5" "torchvision"
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi
