#!/usr/bin/env bash
# The scale path on one GPU in one command (under 8 minutes on an H100/H200): golden cases on CUDA in fp32 and
# bf16, Flex vs SDPA vs flash-attn at 4k-32k packed tokens, 200 training steps of a ~0.6B model with tokens/s
# and MFU; the tables are appended to benchmarks/RESULTS.md with the device named.
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run   # check every part at tiny sizes on a CPU (scratch file)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout 470 "$PYTHON" benchmarks/gpu_check.py "$@"
