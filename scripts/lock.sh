#!/usr/bin/env bash
# Regenerates requirements/lock.txt: every transitive dependency of rsneo[dev] (plus its build backend and pip),
# pinned with sha256 hashes, resolved once for every Python >= 3.11 (uv's universal mode: 3.11 and 3.12 on
# Linux x86_64 included). pyproject.toml keeps compatible ranges; requirements/pins.txt holds deliberate pins.
# Usage: bash scripts/lock.sh [extra uv pip compile options, e.g. --upgrade-package transformers]
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
uv=${UV:-}
if [ -z "$uv" ]; then
  tool=.cache/uv-$UV_VERSION
  if [ ! -x "$tool/bin/uv" ]; then
    echo "lock: installing uv $UV_VERSION into $tool"
    python3 -m venv "$tool"
    "$tool/bin/pip" install -q "uv==$UV_VERSION"
  fi
  uv=$tool/bin/uv
fi
"$uv" pip compile pyproject.toml requirements/build.in --extra dev \
  --constraints requirements/pins.txt \
  --universal --python-version 3.11 --generate-hashes \
  --custom-compile-command "bash scripts/lock.sh" \
  --quiet --output-file requirements/lock.txt "$@"
echo "lock: wrote requirements/lock.txt ($(grep -c '^[a-z]' requirements/lock.txt) pinned packages)"
