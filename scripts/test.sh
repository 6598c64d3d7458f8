#!/usr/bin/env bash
# Sets up (scripts/setup.sh --with-qgis), checks style (ruff) and runs the whole test suite on the CPU:
# tests/ and the executed notebooks (nbmake). Extra arguments go to pytest instead of the default paths.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-qgis
.venv/bin/ruff check .
[ $# -eq 0 ] && set -- tests notebooks
exec .venv/bin/python -m pytest -q -n 2 --timeout 900 --nbmake "$@"
