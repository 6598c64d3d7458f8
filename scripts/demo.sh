#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the demo on the bundled model and samples: segmentation, change report, VQA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rsneo demo --out "${1:-demo-out}"
