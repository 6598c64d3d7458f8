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
    PREDICTION_OPACITY,
    qml_document,
    raster_display,
    write_qgz,
    write_qml,
)
from rsneo.io.vector import write_class_polygons
from rsneo.predict.requests import ChangeRequest


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
    assert float(root.find("./pipe/rasterrenderer").get("opacity")) < 1  # the imagery shows through
    assert qml_document(legend) == path.read_text()


def test_untrained_classes_are_labelled_so_in_the_style(tmp_path):
    legend = ClassLegend.from_names(["water", "quarry pit"], untrained=("quarry pit",))
    root = ET.fromstring(qml_document(legend).split("\n", 1)[1])
    labels = [e.get("label") for e in root.iter("paletteEntry")]
    assert labels == ["water", "quarry pit (untrained)"]


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
def test_qgis_opens_the_project_with_valid_styled_layers(qgis, shared_data, tmp_path):
    raster, project, legend = make_project(shared_data, tmp_path)
    seen = qgis.describe(project)
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


@pytest.mark.qgis
def test_untrained_labels_reach_qgis_legends(qgis, shared_data, tmp_path):
    raster, cog, gpkg, _, crs = make_outputs(shared_data, tmp_path)
    legend = ClassLegend.from_names(["water", "forest", "built-up"], untrained=("built-up",))
    project = write_qgz(
        tmp_path / "p.qgz", inputs=[raster], class_maps=[(cog, legend)], polygons=[(gpkg, legend)], crs=crs
    )
    seen = {layer["renderer"]: layer for layer in qgis.describe(project)["layers"]}
    assert [c[1] for c in seen["paletted"]["classes"]] == ["water", "forest", "built-up (untrained)"]
    assert [c[1] for c in seen["categorizedSymbol"]["classes"]] == ["water", "forest", "built-up (untrained)"]


def quadrant_classes(height: int, width: int) -> np.ndarray:
    """Class 0 top-left, 1 top-right, 2 the bottom half: any flip or shift moves a colour."""
    classes = np.full((height, width), 2, np.uint8)
    classes[: height // 2, : width // 2] = 0
    classes[: height // 2, width // 2 :] = 1
    return classes


def rendered(path: Path) -> np.ndarray:
    """(H, W, 3) int RGB of a PNG QGIS drew."""
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


@pytest.mark.qgis
# the PNG is ungeoreferenced on purpose: rasterio says so when the test opens it
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_outputs_of_an_ungeoreferenced_png_land_exactly_on_it_in_qgis(qgis, shared_data, tmp_path):
    """QGIS shows a PNG without georeference at x 0..width, y 0..-height: the outputs must sit there."""
    png = sorted((shared_data / "levir_cd" / "A").glob("*.png"))[0]
    with rasterio.open(png) as src:
        width, height = src.width, src.height
        assert src.crs is None
    legend = ClassLegend.from_names(["water", "building", "vegetation"])
    writer = CogBlockWriter(
        tmp_path / "pred.tif",
        width=width,
        height=height,
        crs=None,
        transform=rasterio.Affine.identity(),
        legend=legend,
    )  # fmt: skip (what segment and change pass for pixel-unit inputs)
    writer.write(Window(0, 0, width, height), quadrant_classes(height, width))
    cog = writer.finish()
    write_class_polygons(cog, tmp_path / "pred.gpkg", legend)
    project = write_qgz(
        tmp_path / "project.qgz", inputs=[png], class_maps=[(cog, legend)],
        polygons=[(tmp_path / "pred.gpkg", legend)], crs=None,
    )  # fmt: skip
    seen = qgis.describe(project)
    assert all(layer["valid"] for layer in seen["layers"]), seen
    for layer in seen["layers"]:  # exact placement: pixel units, integral edges
        assert layer["extent"] == pytest.approx([0, -height, width, 0], abs=1e-6), layer

    # the class map alone, drawn over white in the PNG's own frame: each quadrant its colour, at the opacity
    classes_only = qgis.render(
        project, tmp_path / "classes.png", layers=["pred"], extent_of=png.name, size=width
    )
    assert classes_only["saved"] and classes_only["extent"] == pytest.approx([0, -height, width, 0])
    drawn = rendered(tmp_path / "classes.png")
    assert drawn.shape[:2] == (height, width)
    h, w = height, width
    centres = {0: (h // 4, w // 4), 1: (h // 4, 3 * w // 4), 2: (3 * h // 4, w // 2)}
    for value, (row, col) in centres.items():
        expected = PREDICTION_OPACITY * np.array(legend.colors[value]) + (1 - PREDICTION_OPACITY) * 255
        # 8-bit compositing rounds each channel: 3 levels of tolerance
        np.testing.assert_allclose(drawn[row, col], expected, atol=3, err_msg=f"class {value} misplaced")

    # the whole project: the imagery shows through the predictions (blend of class colour and the image)
    qgis.render(project, tmp_path / "input.png", layers=[png.name], extent_of=png.name, size=width)
    qgis.render(project, tmp_path / "all.png", extent_of=png.name, size=width)
    image, both = rendered(tmp_path / "input.png"), rendered(tmp_path / "all.png")
    for value, (row, col) in centres.items():
        under = (1 - PREDICTION_OPACITY) * image[row, col]
        expected = PREDICTION_OPACITY * np.array(legend.colors[value]) + under
        np.testing.assert_allclose(both[row, col], expected, atol=3)
    assert np.abs(both - image).mean() > 10  # and the predictions are really drawn over it


@pytest.mark.qgis
def test_change_outputs_of_a_png_pair_sit_on_the_images_in_qgis(qgis, tiny_system, shared_data, tmp_path):
    """End to end: `rsneo change` on a LEVIR-CD PNG pair; QGIS draws the change map where its pixels are."""
    import warnings

    from rsneo.predict.change import detect_change

    pair = [shared_data / "levir_cd" / d / "test_7_0256_0512.png" for d in ("A", "B")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = detect_change(tiny_system, ChangeRequest(rasters=pair, out=tmp_path / "out"))
    seen = qgis.describe(out.qgz)
    assert len(seen["layers"]) == 4 and all(layer["valid"] for layer in seen["layers"]), seen
    rasters = [layer for layer in seen["layers"] if layer["renderer"] != "categorizedSymbol"]
    for layer in rasters:  # the polygons' extent is that of the changed pixels only
        assert layer["extent"] == pytest.approx([0, -256, 256, 0], abs=1e-6), layer
    png = tmp_path / "change.png"
    info = qgis.render(out.qgz, png, layers=["change"], extent_of=pair[0].name, size=256)
    assert info["extent"] == pytest.approx([0, -256, 256, 0], abs=1e-6)
    with rasterio.open(out.cog) as src:
        changed = src.read(1) == 1  # (256, 256), row 0 at the top
        legend_colour = np.array(src.colormap(1)[1][:3])
    drawn = rendered(png)
    expected = PREDICTION_OPACITY * legend_colour + (1 - PREDICTION_OPACITY) * 255
    close = np.abs(drawn - expected).max(axis=-1) <= 3  # (256, 256): drawn in the change colour
    assert 0.02 < changed.mean() < 0.98  # a map with both classes, so placement can be wrong
    # pixel for pixel, QGIS draws the change colour exactly where the map says change (no flip, no shift)
    assert (close == changed).mean() > 0.99


def test_no_change_is_not_drawn_over_the_imagery():
    legend = ClassLegend.from_names(["no change", "change"])
    root = ET.fromstring(qml_document(legend).split("\n", 1)[1])
    assert [e.get("alpha") for e in root.iter("paletteEntry")] == ["0", "255"]
