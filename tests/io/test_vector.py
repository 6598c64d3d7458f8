"""Class polygons and areas: geodesic hectares in a geographic CRS, true (not planar) in a projected one."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.windows import Window
from shapely.geometry import box

from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter
from rsneo.io.vector import class_areas, write_class_polygons


def label_cog(label_path, out):
    """The Sen1Floods11 hand label (EPSG:4326) as a class map: 0 land, 1 water, -1 no data."""
    legend = ClassLegend.from_names(["land", "water"])
    with rasterio.open(label_path) as src:
        label = src.read(1)
        classes = np.where(label < 0, NODATA_CLASS, label).astype(np.uint8)
        writer = CogBlockWriter(
            out, width=src.width, height=src.height, crs=src.crs, transform=src.transform, legend=legend
        )
        writer.write(Window(0, 0, src.width, src.height), classes)
        return writer.finish(), legend, classes, src.transform, src.crs


def test_geodesic_areas_match_pyproj_and_polygons(shared_data, tmp_path):
    cog, legend, classes, transform, crs = label_cog(
        shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif", tmp_path / "label.tif"
    )
    assert crs.is_geographic
    areas = class_areas(cog)
    # reference: geodesic area of each pixel row on WGS84, times the class's pixel count in that row
    geod = Geod(ellps="WGS84")
    expected = {"land": 0.0, "water": 0.0}
    for row in range(classes.shape[0]):
        x0, y0 = transform @ (0, row)
        x1, y1 = transform @ (1, row + 1)
        pixel_ha = abs(geod.geometry_area_perimeter(box(x0, min(y0, y1), x1, max(y0, y1)))[0]) / 1e4
        for value, name in enumerate(("land", "water")):
            expected[name] += (classes[row] == value).sum() * pixel_ha
    for name in expected:
        assert areas[name] == pytest.approx(expected[name], rel=1e-9)
    totals = write_class_polygons(cog, tmp_path / "label.gpkg", strip_rows=200)
    for name in expected:
        assert totals[name] == pytest.approx(expected[name], rel=1e-6)
    frame = gpd.read_file(tmp_path / "label.gpkg", layer="classes")
    assert set(frame.columns) >= {"class_id", "class_name", "area_ha", "geometry"}
    assert frame.crs == crs
    assert set(frame.class_name) == {"land", "water"}
    assert frame.groupby("class_name").area_ha.sum()["water"] == pytest.approx(expected["water"], rel=1e-6)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_projected_areas_are_true_areas_not_planar(shared_data, tmp_path):
    legend = ClassLegend.from_names(["dark", "bright"])
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        red = src.read(1)
        classes = np.where(src.dataset_mask() == 0, NODATA_CLASS, red > 100).astype(np.uint8)
        writer = CogBlockWriter(
            tmp_path / "c.tif", width=src.width, height=src.height, crs=src.crs, transform=src.transform,
            legend=legend,
        )  # fmt: skip
        writer.write(Window(0, 0, src.width, src.height), classes)
        cog = writer.finish()
        pixel_ha = abs(src.transform.a * src.transform.e) / 1e4
    areas = write_class_polygons(cog, tmp_path / "c.gpkg", skip=(0,))
    assert set(areas) == {"bright"}
    # UTM enlarges areas by k^2 ~ 1.0013 this far (~250-400 km) from the zone's central meridian: the true
    # area is a little smaller than the planar one, by more than the 1e-9 of rounding and less than 0.3 %
    planar = (classes == 1).sum() * pixel_ha
    assert planar * (1 - 3e-3) < areas["bright"] < planar * (1 - 1e-4)


def test_regions_merged_across_strips_are_the_polygons_traced_in_one_strip(shared_data, tmp_path):
    """Strips of 32 rows cut many water and land regions (some with holes) at seams; merged back they must be
    exactly the polygons of one 512-row strip (same count, pixels, topologically equal geometry)."""
    import shapely

    label = shared_data / "sen1floods11/Labels/Spain_7370579_LabelHand.tif"
    cog, _, _, transform, _ = label_cog(label, tmp_path / "l.tif")
    write_class_polygons(cog, tmp_path / "strips.gpkg", strip_rows=32)
    write_class_polygons(cog, tmp_path / "whole.gpkg", strip_rows=512)
    frames = []
    for name in ("strips", "whole"):
        frame = gpd.read_file(tmp_path / f"{name}.gpkg", layer="classes")
        corner = frame.geometry.bounds  # a polygon's corner is the same in both files: both sort alike
        frame = frame.assign(cx=corner.minx.round(8), cy=corner.miny.round(8))
        frames.append(frame.sort_values(["class_id", "pixels", "cx", "cy"]))
    strips, whole = frames
    assert len(strips) == len(whole) and (strips.pixels.values == whole.pixels.values).all()
    rows = (whole.geometry.bounds.maxy - whole.geometry.bounds.miny) / abs(transform.e)
    spanning = (rows > 32).values
    with_holes = shapely.get_num_interior_rings(whole.geometry.values) > 0
    assert (spanning & with_holes).sum() >= 3  # the merge of pieces with holes is exercised
    same = shapely.equals(strips.geometry.values, whole.geometry.values)
    assert same.all(), strips[~same].head()


def test_the_layer_describes_its_classes_as_the_legend_does(shared_data, tmp_path):
    """QGIS shows a GeoPackage layer's description; the labels (read as, untrained) and notes are there and in
    the layer metadata, so the polygons alone say what each class is."""
    import json

    import pyogrio

    cog, _, _, _, _ = label_cog(
        shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif", tmp_path / "c.tif"
    )
    legend = ClassLegend.from_names(
        ["cropland", "water"], untrained=("cropland",), notes=("outside the training data",),
        read_as={"cropland": "read as land, broader"},
    )  # fmt: skip
    write_class_polygons(cog, tmp_path / "c.gpkg", legend)
    info = pyogrio.read_info(tmp_path / "c.gpkg", layer="classes")
    metadata = info["layer_metadata"]
    assert json.loads(metadata["rsneo_class_labels"]) == [
        "cropland (read as land, broader; untrained)",
        "water",
    ]
    assert json.loads(metadata["rsneo_notes"]) == ["outside the training data"]
    import sqlite3

    with sqlite3.connect(tmp_path / "c.gpkg") as db:
        (description,) = db.execute(
            "select description from gpkg_contents where table_name='classes'"
        ).fetchone()
    assert description == (
        "rsneo classes: cropland (read as land, broader; untrained); water. Note: outside the training data"
    )


def test_simplified_polygons_stay_a_coverage_with_the_pixels_areas(shared_data, tmp_path):
    """--simplify: outlines lose most of their staircase vertices, but neighbours keep one shared edge (no
    gap, no overlap: a valid coverage), no polygon is lost, and the hectares are those of the pixels."""
    import shapely

    cog, _, _, transform, _ = label_cog(
        shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif", tmp_path / "c.tif"
    )
    traced = write_class_polygons(cog, tmp_path / "traced.gpkg", strip_rows=100)
    pixel = abs(transform.a)
    simple = write_class_polygons(cog, tmp_path / "simple.gpkg", strip_rows=100, simplify=str(1.5 * pixel))
    assert simple == traced  # totals of the pixels, exactly
    a = gpd.read_file(tmp_path / "traced.gpkg", layer="classes")
    b = gpd.read_file(tmp_path / "simple.gpkg", layer="classes")
    assert len(a) == len(b) and (a.area_ha.values == b.area_ha.values).all()
    vertices = [shapely.get_num_coordinates(f.geometry.values).sum() for f in (a, b)]
    assert vertices[1] < 0.6 * vertices[0], vertices
    assert shapely.coverage_is_valid(b.geometry.values) and b.geometry.is_valid.all()
    # the same ground: the simplified coverage covers the traced one up to slivers along its outer edge
    outline = shapely.union_all(a.geometry.values)
    moved = shapely.symmetric_difference(outline, shapely.union_all(b.geometry.values)).area
    assert moved < 0.01 * outline.area
    in_pixels = write_class_polygons(cog, tmp_path / "px.gpkg", strip_rows=100, simplify="1.5px")
    assert in_pixels == traced
    c = gpd.read_file(tmp_path / "px.gpkg", layer="classes")
    assert shapely.equals(c.geometry.values, b.geometry.values).mean() > 0.99  # 1.5 px = 1.5 x pixel size
    with pytest.raises(InputError, match=r"--simplify: expected a distance in map units \(20\) or pixels"):
        write_class_polygons(cog, tmp_path / "bad.gpkg", simplify="ten")
    assert not (tmp_path / "bad.gpkg").exists()
