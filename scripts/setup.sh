#!/usr/bin/env bash
# Creates .venv with rsneo and everything it needs; installs the system packages (GDAL tools, QGIS for the tests).
# Idempotent: a second run only checks (it reinstalls when requirements/lock.txt changes).
# Usage: scripts/setup.sh [--with-qgis]
set -euo pipefail
cd "$(dirname "$0")/.."

want_qgis=0
[ "${1:-}" = "--with-qgis" ] && want_qgis=1

apt_pkgs=(gdal-bin)
[ "$want_qgis" = 1 ] && apt_pkgs+=(python3-qgis qgis-providers qgis)  # qgis: qgis_process
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
# The venv holds exactly requirements/lock.txt (hash-checked) plus rsneo itself (editable). The stamp records the
# lock and pyproject it was made from, so a changed lock (scripts/lock.sh) reinstalls on the next run.
lock=requirements/lock.txt
stamp=.venv/.rsneo-installed
want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked dependencies into .venv (first time: several minutes)"
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  # Packages the lock no longer lists would linger in an existing .venv: remove them.
  locked=$(sed -nE 's/^([A-Za-z0-9._-]+)==.*/\1/p' "$lock" | tr 'A-Z_.' 'a-z--' | sort -u)
  extra=$(.venv/bin/python -m pip freeze --exclude-editable --all 2>/dev/null | sed -E 's/[=@ ].*//' \
    | tr 'A-Z_.' 'a-z--' | sort -u | comm -23 - <(echo "$locked") | grep -vx rsneo || true)
  if [ -n "$extra" ]; then
    echo "setup: removing packages not in the lock: $(echo $extra)"
    .venv/bin/python -m pip uninstall -q -y $extra
  fi
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
