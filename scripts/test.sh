#!/usr/bin/env bash
# Sets up (scripts/setup.sh --with-qgis) and runs the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-qgis
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -n 2 --timeout 900 "$@"
