"""QGIS style and project: written without QGIS, then opened by QGIS itself (python3-qgis, headless)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter
from rsneo.io.qgis import (
    QGIS_PYTHON,
    describe_with_qgis,
    qgis_available,
    qml_document,
    raster_display,
    write_qgz,
    write_qml,
)
from rsneo.io.vector import write_class_polygons


def open_in_qgis(project: Path) -> dict:
    """What QGIS itself sees in `project`; skips when Debian's python3-qgis is not installed."""
    if not qgis_available():
        pytest.skip(
            f"QGIS's python bindings are not importable from {QGIS_PYTHON} (apt install python3-qgis)"
        )
    return describe_with_qgis(project)


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


def make_project(shared_data, tmp_path):
    """The input raster, a .qgz holding it with a class map and its polygons, and the legend."""
    raster, cog, gpkg, legend, crs = make_outputs(shared_data, tmp_path)
    project = write_qgz(
        tmp_path / "project.qgz",
        inputs=[raster],
        class_maps=[(cog, legend)],
        polygons=[(gpkg, legend)],
        crs=crs,
    )
    return raster, project, legend


def test_qgz_is_a_zip_with_one_qgs_and_relative_output_paths(shared_data, tmp_path):
    raster, project, legend = make_project(shared_data, tmp_path)
    with zipfile.ZipFile(project) as archive:
        assert archive.namelist() == ["project.qgs"]
        root = ET.fromstring(archive.read("project.qgs").decode().split("\n", 1)[1])
    sources = [node.text for node in root.iter("datasource")]
    assert sources == ["./pred.gpkg|layername=classes", "./pred.tif", raster.resolve().as_posix()]
    assert root.find("./projectCrs/spatialrefsys/authid").text == "EPSG:32618"


@pytest.mark.qgis
def test_qgis_opens_the_project_with_valid_styled_layers(shared_data, tmp_path):
    raster, project, legend = make_project(shared_data, tmp_path)
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


def test_display_stretch_from_a_block_sample_or_overviews_lies_near_the_full_rasters(shared_data, tmp_path):
    """Without overviews the stretch comes from a few blocks, with them from a decimated read; either way
    its 2 and 98 % points must lie within the full raster's 0.25-5 % and 95-99.75 % (a spatial sample's
    quantiles wander by ranks, not by values; 16 of 64 blocks land near 1 % and 97.8 % here)."""
    s2 = shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif"
    tiled = tmp_path / "tiled.tif"
    with rasterio.open(s2) as src:
        data = src.read([4, 3, 2])
        profile = src.profile | {"count": 3, "tiled": True, "blockxsize": 64, "blockysize": 64}
    with rasterio.open(tiled, "w", **profile) as dst:
        dst.write(data)
    sampled = raster_display(tiled, blocks=16)  # 64 blocks of 64 x 64: 16 of them are read
    with rasterio.open(tiled, "r+") as dst:
        dst.build_overviews([2, 4])
    from_overviews = raster_display(tiled, blocks=16)
    assert sampled.bands == from_overviews.bands == (1, 2, 3)
    assert sampled.ranges != from_overviews.ranges  # two different samples of the raster
    for display in (sampled, from_overviews):
        for band, (lo, hi) in zip(data, display.ranges, strict=True):
            values = band[band != 0]  # nodata 0
            assert np.percentile(values, 0.25) <= lo <= np.percentile(values, 5)
            assert np.percentile(values, 95) <= hi <= np.percentile(values, 99.75)
