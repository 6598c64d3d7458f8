#!/usr/bin/env bash
# Sets up (scripts/setup.sh --with-qgis), checks style (ruff) and runs the whole test suite on the CPU:
# tests/ and the executed notebooks (nbmake). Extra arguments go to pytest instead of the default paths.
# With no arguments it then runs the model and data tests once more as another CPU would: ATen's portable
# kernels (ATEN_CPU_CAPABILITY=default instead of AVX2/AVX-512) and one thread (another reduction order).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-qgis
.venv/bin/ruff check .
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -q -n 2 --timeout 900 --nbmake "$@"
fi
.venv/bin/python -m pytest -q -n 2 --timeout 900 --nbmake tests notebooks
echo "test: model and data tests with ATEN_CPU_CAPABILITY=default and one thread"
ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  .venv/bin/python -m pytest -q -n 2 --timeout 900 tests/model tests/data
