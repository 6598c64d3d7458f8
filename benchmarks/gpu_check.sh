#!/usr/bin/env bash
# The scale path on one GPU in one command: golden cases on CUDA in fp32 and bf16, Flex vs SDPA vs the varlen
# flash kernels at 4k-32k packed tokens on rsneo's own layout, 200 training steps of a ~0.6B model with tokens/s
# and MFU, and the short fine-tuning recipe. Each part runs with its own time budget (11 minutes in all at most)
# and appends its table to benchmarks/RESULTS.md as soon as it finishes, with the device named.
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run   # every part at tiny sizes on a CPU (scratch file)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$PYTHON" benchmarks/gpu_check.py "$@"
