"""`rsneo.accuracy.reference`: each reference point or polygon, in another CRS, gets the map class under it
(polygons: the majority); units off the map are counted out; bad reference files are InputErrors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import LineString, Point, box

from rsneo.accuracy.reference import read_reference
from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter

CLASSES = ("water", "land")
UTM = "EPSG:32630"
TRANSFORM = rasterio.Affine(10, 0, 500_000, 0, -10, 4_000_000)  # 10 m pixels


@pytest.fixture(scope="module")
def class_map(tmp_path_factory):
    """64 x 64 pixels: water (0) in the left half, land (1) in the right, a nodata square top left."""
    values = np.zeros((64, 64), np.uint8)
    values[:, 32:] = 1
    values[:8, :8] = NODATA_CLASS
    path = tmp_path_factory.mktemp("map") / "scene_classes.tif"
    writer = CogBlockWriter(path, width=64, height=64, crs=rasterio.crs.CRS.from_string(UTM),
                            transform=TRANSFORM, legend=ClassLegend.from_names(list(CLASSES)))  # fmt: skip
    writer.write(Window(0, 0, 64, 64), values)
    return writer.finish()


def centre(col: float, row: float) -> Point:
    return Point(TRANSFORM @ (col, row))


def reference_file(tmp_path, records, name="reference.gpkg", crs=4326):
    """Features drawn in the map's CRS, saved in `crs` (reprojected back on reading)."""
    path = tmp_path / name
    gpd.GeoDataFrame(records, crs=UTM).to_crs(crs).to_file(path)
    return path


def test_points_and_polygons_in_another_crs_take_the_map_class_under_them(class_map, tmp_path):
    records = [
        {"cover": "Water", "geometry": centre(10.5, 20.5)},  # a water pixel; case of the name is ignored
        {"cover": "land", "geometry": centre(40.5, 20.5)},  # a land pixel
        # 12 columns of water and 4 of land: the majority is water
        {"cover": "land", "geometry": box(*TRANSFORM @ (20, 40), *TRANSFORM @ (36, 50))},
        {"cover": "water", "geometry": centre(60.2, 60.7).buffer(1.0)},  # smaller than a pixel: land under it
        {"cover": "water", "geometry": centre(3.5, 3.5)},  # on the map's nodata
        {"cover": "land", "geometry": centre(200.5, 20.5)},  # off the map
    ]
    sample = read_reference(reference_file(tmp_path, records), "cover", class_map, CLASSES)
    np.testing.assert_array_equal(sample.map_class, [0, 1, 0, 1])
    np.testing.assert_array_equal(sample.reference_class, [0, 1, 1, 0])
    assert (sample.features, sample.outside) == (6, 2)
    assert sample.kinds == ("Point", "Polygon")


@pytest.mark.parametrize(
    ("records", "field", "message"),
    [
        ([{"cover": "forest", "geometry": centre(10.5, 20.5)}], "cover",
         r"holds classes \['forest'\] that the map .*scene_classes.tif does not have"),
        ([{"cover": "water", "geometry": centre(10.5, 20.5)}], "class",
         r"has no field 'class'; its fields are \['cover'\]"),
        ([{"cover": "water", "geometry": LineString([centre(1, 1), centre(9, 9)])}], "cover",
         r"holds \['LineString'\] features; expected points or polygons"),
    ],
)  # fmt: skip
def test_bad_reference_files_name_the_file(class_map, tmp_path, records, field, message):
    path = reference_file(tmp_path, records)
    with pytest.raises(InputError, match=message) as caught:
        read_reference(path, field, class_map, CLASSES)
    assert str(path) in str(caught.value)


def test_an_empty_reference_file_is_refused(class_map, tmp_path):
    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="empty.geojson: no feature with a geometry and a class"):
        read_reference(path, "cover", class_map, CLASSES)
