"""`rsneo assess` end to end: the bundled model's segmentation of the real Sen1Floods11 chip, assessed with
reference points drawn from its hand labels (another CRS). The error matrix is the points' own counts, and the
error-adjusted water area's 95% interval holds the area the hand labels measure; bad input exits 2."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

from rsneo.accuracy.assess import assess_map
from rsneo.cli import run_app
from rsneo.cli.documents import AssessDocument
from rsneo.heads.system import load_system
from rsneo.io.areas import PixelAreas
from rsneo.predict.requests import SegmentRequest
from rsneo.predict.segment import segment_raster

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
LABELS = ("sen1floods11", "Labels", "Spain_7370579_LabelHand.tif")
PER_CLASS = 60  # reference points per map class (water, land)


@pytest.fixture(scope="module")
def water_map(shared_data, tmp_path_factory):
    """The bundled model's class map of the chip (water, land, none of these) as `rsneo segment` writes it."""
    out = tmp_path_factory.mktemp("segmented")
    raster = shared_data.joinpath(*S2)
    request = SegmentRequest(raster=raster, classes=("water", "land"), out=out, confidence=False)
    return segment_raster(load_system(), request).cog


@pytest.fixture(scope="module")
def arrays(water_map, shared_data):
    with rasterio.open(water_map) as m, rasterio.open(shared_data.joinpath(*LABELS)) as lab:
        return m.read(1), lab.read(1), m.transform, m.crs, PixelAreas.of(m)


def reference_points(arrays, path, seed=0, shift=0.0):
    """A stratified random sample: `PER_CLASS` labelled pixels in each of the map's water and land, each a
    point with its hand-labelled class, saved in Web Mercator."""
    mapped, label, transform, crs, _ = arrays
    rng = np.random.default_rng(seed)
    records, cells = [], []
    for value in (0, 1):
        rows, cols = np.nonzero((mapped == value) & (label >= 0))
        for i in rng.choice(len(rows), PER_CLASS, replace=False):
            x, y = transform @ (cols[i] + 0.5, rows[i] + 0.5)
            truth = "water" if label[rows[i], cols[i]] == 1 else "land"
            records.append({"cover": truth, "geometry": Point(x + shift, y)})
            cells.append((rows[i], cols[i]))
    gpd.GeoDataFrame(records, crs=crs).to_crs(3857).to_file(path)
    return cells


@pytest.fixture(scope="module")
def assessed(arrays, water_map, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "points.gpkg"
    cells = reference_points(arrays, path)
    return assess_map(water_map, path, "cover"), cells


def test_error_matrix_counts_the_points_map_and_hand_labelled_classes(assessed, arrays):
    assessment, cells = assessed
    mapped, label = arrays[0], arrays[1]
    expected = np.zeros((3, 3), np.int64)
    for row, col in cells:  # map: 0 water, 1 land; hand label 1 water, 0 land
        expected[mapped[row, col], 0 if label[row, col] == 1 else 1] += 1
    np.testing.assert_array_equal(assessment.estimates.counts, expected)
    assert assessment.estimates.classes == ("water", "land", "none of these")
    assert (assessment.reference.features, assessment.reference.outside) == (2 * PER_CLASS, 0)


def test_mapped_areas_are_the_maps_ellipsoidal_hectares(assessed, arrays):
    mapped, areas = arrays[0], arrays[4]
    per_pixel = np.broadcast_to(areas.rows(0, mapped.shape[0]), mapped.shape)
    for value, name in enumerate(("water", "land")):
        area = assessed[0].estimates.mapped_area[value]
        assert area == pytest.approx(per_pixel[mapped == value].sum(), rel=1e-9), name
        assert area > 100  # hectares: a 512 x 512 chip of 10 m pixels is about 2,000 ha
    assert assessed[0].unit == "ha"


def test_error_adjusted_water_area_interval_holds_the_hand_labelled_area(assessed, arrays):
    """The hand labels cover the chip (99 of 262,144 pixels unlabelled): the true water area of the assessed
    population (the map's water and land; "none of these" has no sample and is left out) is known."""
    mapped, label, areas = arrays[0], arrays[1], arrays[4]
    per_pixel = np.broadcast_to(areas.rows(0, mapped.shape[0]), mapped.shape)
    assessed_population = mapped <= 1
    true_water = per_pixel[assessed_population & (label == 1)].sum()
    estimates = assessed[0].estimates
    water = estimates.area[0]
    assert abs(water.value - true_water) <= water.ci95
    assert 0 < water.ci95 < 0.5 * water.value  # an interval, not a formality
    assert estimates.unsampled == ("none of these",) or estimates.mapped_area[2] == 0
    total = sum(e.value for e in estimates.area)
    assert total == pytest.approx(estimates.mapped_area[:2].sum(), rel=1e-9)


def test_assess_json_document(assessed, water_map, capsys):
    reference = str(assessed[0].reference.path)
    assert run_app(["assess", str(water_map), reference, "--class-field", "cover", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    AssessDocument.model_validate(doc)  # the documented schema, nothing beside it
    assert doc["command"] == "assess" and doc["unit"] == "ha" and doc["z"] == 1.96 and doc["ok"]
    assert doc["error_matrix"] == assessed[0].estimates.counts.tolist()
    assert doc["sample"] == {"features": 2 * PER_CLASS, "used": 2 * PER_CLASS, "outside_map": 0,
                             "geometry": ["Point"]}  # fmt: skip
    water = assessed[0].estimates.area[0]
    assert doc["area"]["water"] == {"estimate": pytest.approx(water.value), "ci95": pytest.approx(water.ci95)}
    assert set(doc["users_accuracy"]) == set(doc["classes"]) == {"water", "land", "none of these"}
    assert np.array(doc["area_weighted_error_matrix"]).sum() == pytest.approx(1.0)


def test_assess_prints_matrices_and_intervals(assessed, water_map, capsys):
    assert run_app(["assess", str(water_map), str(assessed[0].reference.path), "--class-field", "cover"]) == 0
    out = capsys.readouterr()
    assert "error matrix (sample counts; rows: map, columns: reference)" in out.out
    assert "overall accuracy" in out.out and "estimated (ha)" in out.out
    if "none of these" in assessed[0].estimates.unsampled:
        assert "none of these" in out.err and "no reference sample" in out.err


def test_bad_input_exits_2_naming_the_file(arrays, water_map, shared_data, tmp_path, capsys):
    far = tmp_path / "far.gpkg"
    reference_points(arrays, far, shift=1.0)  # a degree east: off the chip
    forest = tmp_path / "forest.geojson"
    gpd.GeoDataFrame([{"cover": "forest", "geometry": Point(-0.77, 38.12)}], crs=4326).to_file(forest)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    cases = [
        ([str(water_map), str(far), "--class-field", "cover"], far, "none of its 120 features lies on"),
        ([str(water_map), str(forest), "--class-field", "cover"], forest, "holds classes ['forest']"),
        ([str(water_map), str(empty), "--class-field", "cover"], empty, "no feature with a geometry"),
        ([str(water_map), str(forest)], forest, "has no field 'class'"),
        ([str(shared_data.joinpath(*S2)), str(forest), "--class-field", "cover"], shared_data.joinpath(*S2),
         "has no class names in its tags"),
    ]  # fmt: skip
    for argv, named, message in cases:
        assert run_app(["assess", *argv]) == 2, message
        err = " ".join(capsys.readouterr().err.split())
        assert str(named) in err and message in err, err
