#!/usr/bin/env bash
# Packages qgis_plugin/rsneo_qgis as a QGIS plugin zip (Plugins > Manage and Install > Install from ZIP).
# Usage: scripts/build_qgis_plugin.sh [OUT_DIR]   (default: dist/) -> OUT_DIR/rsneo_qgis-<version>.zip
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
version=$(sed -n 's/^version=//p' qgis_plugin/rsneo_qgis/metadata.txt)
mkdir -p "$out"
zip_path="$(cd "$out" && pwd)/rsneo_qgis-${version}.zip"
tmp="${zip_path}.partial"
rm -f "$tmp"
(cd qgis_plugin && python3 - "$tmp" <<'PY'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(Path("rsneo_qgis").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            z.write(path, path.as_posix())
PY
)
mv "$tmp" "$zip_path"
echo "$zip_path"
