"""QGIS style and project: written without QGIS, then opened by QGIS itself (python3-qgis, headless)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter
from rsneo.io.qgis import qml_document, write_qgz, write_qml
from rsneo.io.vector import write_class_polygons

SYSTEM_PYTHON = "/usr/bin/python3"

# Runs inside QGIS's Python: open the project, describe every layer as JSON.
QGIS_PROBE = r"""
import json, sys
from qgis.core import QgsApplication, QgsProject
app = QgsApplication([], False)
app.initQgis()
project = QgsProject.instance()
out = {"read": project.read(sys.argv[1]), "crs": project.crs().authid(), "layers": []}
for layer in project.mapLayers().values():
    info = {"name": layer.name(), "valid": layer.isValid(), "crs": layer.crs().authid(), "classes": []}
    renderer = layer.renderer()
    info["renderer"] = renderer.type() if renderer else None
    if info["renderer"] == "paletted":
        info["classes"] = [[int(c.value), c.label, c.color.name()] for c in renderer.classes()]
    elif info["renderer"] == "categorizedSymbol":
        info["classes"] = [[c.value(), c.label(), c.symbol().color().name()] for c in renderer.categories()]
    out["layers"].append(info)
print("PROBE" + json.dumps(out))
app.exitQgis()
"""


def qgis_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=60)
    return probe.returncode == 0


def open_in_qgis(project: Path) -> dict:
    """Open `project` with QGIS in a subprocess (system python3, offscreen); describe its layers."""
    if not qgis_available():
        pytest.skip(
            f"QGIS's python bindings are not importable from {SYSTEM_PYTHON} (apt install python3-qgis)"
        )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": "/tmp"}
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", QGIS_PROBE, str(project)], capture_output=True, text=True, timeout=180, env=env
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE")), None)
    assert line is not None, done.stdout + done.stderr
    return json.loads(line[len("PROBE") :])


def make_outputs(shared_data: Path, folder: Path) -> tuple[Path, Path, Path, ClassLegend, rasterio.crs.CRS]:
    """A class map (red band thresholds of the rasterio sample) as COG + GeoPackage beside a project."""
    raster = shared_data / "rasters" / "RGB.byte.tif"
    legend = ClassLegend.from_names(["water", "forest", "built-up"])
    with rasterio.open(raster) as src:
        red = src.read(1)
        classes = np.digitize(red, [40, 90]).astype(np.uint8)
        classes[src.dataset_mask() == 0] = NODATA_CLASS
        writer = CogBlockWriter(
            folder / "pred.tif", width=src.width, height=src.height, crs=src.crs, transform=src.transform,
            legend=legend,
        )  # fmt: skip
        writer.write(Window(0, 0, src.width, src.height), classes)
        cog = writer.finish()
        crs = src.crs
    gpkg = folder / "pred.gpkg"
    write_class_polygons(cog, gpkg, legend)
    return raster, cog, gpkg, legend, crs


def test_qml_is_a_paletted_style_with_names_and_colours(tmp_path):
    legend = ClassLegend.from_names(["water", "forest"])
    path = write_qml(tmp_path / "pred.qml", legend)
    root = ET.fromstring(path.read_text().split("\n", 1)[1])
    entries = root.findall("./pipe/rasterrenderer/colorPalette/paletteEntry")
    assert root.find("./pipe/rasterrenderer").get("type") == "paletted"
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries] == [
        ("0", "water", legend.hex(0)),
        ("1", "forest", legend.hex(1)),
    ]
    assert qml_document(legend) == path.read_text()


def test_qgz_is_a_zip_with_one_qgs_and_relative_output_paths(shared_data, tmp_path):
    raster, cog, gpkg, legend, crs = make_outputs(shared_data, tmp_path)
    project = write_qgz(
        tmp_path / "project.qgz",
        inputs=[raster],
        class_maps=[(cog, legend)],
        polygons=[(gpkg, legend)],
        crs=crs,
    )
    with zipfile.ZipFile(project) as archive:
        assert archive.namelist() == ["project.qgs"]
        root = ET.fromstring(archive.read("project.qgs").decode().split("\n", 1)[1])
    sources = [node.text for node in root.iter("datasource")]
    assert sources == ["./pred.gpkg|layername=classes", "./pred.tif", raster.resolve().as_posix()]
    assert root.find("./projectCrs/spatialrefsys/authid").text == "EPSG:32618"


@pytest.mark.qgis
def test_qgis_opens_the_project_with_valid_styled_layers(shared_data, tmp_path):
    raster, cog, gpkg, legend, crs = make_outputs(shared_data, tmp_path)
    project = write_qgz(
        tmp_path / "project.qgz",
        inputs=[raster],
        class_maps=[(cog, legend)],
        polygons=[(gpkg, legend)],
        crs=crs,
    )
    seen = open_in_qgis(project)
    assert seen["read"] is True
    assert seen["crs"] == "EPSG:32618"
    assert len(seen["layers"]) == 3
    assert all(layer["valid"] for layer in seen["layers"]), seen
    assert all(layer["crs"] == "EPSG:32618" for layer in seen["layers"])
    by_renderer = {layer["renderer"]: layer for layer in seen["layers"]}
    expected = [[i, name, legend.hex(i)] for i, name in enumerate(legend.names)]
    assert by_renderer["paletted"]["classes"] == expected
    assert by_renderer["categorizedSymbol"]["classes"] == [[n, n, c] for _, n, c in expected]
    assert by_renderer["multibandcolor"]["name"] == "RGB.byte.tif"
