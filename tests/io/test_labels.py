"""Training labels from vector files: reading, reprojection onto the raster grid, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point, box

from rsneo.errors import InputError
from rsneo.io.labels import burn_labels, read_labels
from rsneo.io.read import dataset_grid

LABEL = ("sen1floods11", "Labels", "Spain_7370579_LabelHand.tif")


def uniform_boxes(label: np.ndarray, transform, per_class: int, seed: int = 0) -> list[dict]:
    """3x3-pixel boxes (in the label's CRS) around pixels whose 7x7 neighbourhood has one class."""
    rng = np.random.default_rng(seed)
    records = []
    for value, name in ((1, "water"), (0, "land")):
        rows, cols = np.nonzero(label == value)
        order = rng.permutation(len(rows))
        found = 0
        for i in order:
            r, c = rows[i], cols[i]
            patch = label[max(r - 3, 0) : r + 4, max(c - 3, 0) : c + 4]
            if patch.shape != (7, 7) or not (patch == value).all():
                continue
            (x0, y0), (x1, y1) = transform @ (c - 1, r - 1), transform @ (c + 2, r + 2)
            records.append({"kind": name, "code": value, "geometry": box(x0, y1, x1, y0)})
            found += 1
            if found == per_class:
                break
    return records


@pytest.fixture(scope="module")
def flood_label(shared_data):
    with rasterio.open(shared_data.joinpath(*LABEL)) as src:
        return src.read(1), src.transform, src.crs, dataset_grid(src)


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_polygons_in_another_crs_land_on_their_pixels(flood_label, tmp_path: Path, suffix: str):
    label, transform, crs, grid = flood_label
    frame = gpd.GeoDataFrame(uniform_boxes(label, transform, 6), crs=crs).to_crs(3857)  # web mercator
    path = tmp_path / f"labels{suffix}"
    frame.to_file(path)
    labels = read_labels(path, "kind")
    assert labels.classes == ["land", "water"]
    burnt = burn_labels(labels, grid)
    labelled = burnt.classes >= 0
    # each 3x3 box covers about 9 pixel centres after a round trip through web mercator (edges move <= 1 px)
    assert 12 * 4 <= labelled.sum() <= 12 * 16
    truth = np.where(label == 1, 1, 0)  # land = 0, water = 1 as in `classes`
    assert (burnt.classes[labelled] == truth[labelled]).all()  # boxes lie inside uniform 7x7 areas
    assert len(np.unique(burnt.feature[labelled])) == 12  # every box burnt, each its own feature


def test_points_and_numeric_classes(flood_label, tmp_path: Path):
    label, transform, crs, grid = flood_label
    points = [Point(*(transform @ (c + 0.5, r + 0.5))) for r, c in ((10, 10), (200, 300), (400, 50))]
    frame = gpd.GeoDataFrame({"code": [1.0, 2.0, 2.0]}, geometry=points, crs=crs)
    frame.to_file(tmp_path / "points.gpkg")
    labels = read_labels(tmp_path / "points.gpkg", "code")
    assert labels.classes == ["1", "2"]  # 1.0 reads as "1"
    burnt = burn_labels(labels, grid)
    assert burnt.classes[10, 10] == 0 and burnt.classes[200, 300] == 1 and burnt.classes[400, 50] == 1
    assert (burnt.classes >= 0).sum() == 3


def test_conflicting_classes_are_left_unlabelled(flood_label, tmp_path: Path):
    _, transform, crs, grid = flood_label
    x0, y0 = transform @ (100, 100)
    x1, y1 = transform @ (110, 110)
    xm, ym = transform @ (105, 105)
    frame = gpd.GeoDataFrame(
        {"kind": ["a", "b"]}, geometry=[box(x0, ym, xm, y0), box(x0, y1, x1, y0)], crs=crs
    )  # "a" (5x5) lies inside "b" (10x10)
    frame.to_file(tmp_path / "overlap.gpkg")
    burnt = burn_labels(read_labels(tmp_path / "overlap.gpkg", "kind"), grid)
    assert (burnt.classes[100:105, 100:105] == -1).all()  # claimed by both classes
    assert (burnt.classes[105:110, 100:110] == 1).all() and (burnt.classes == 0).sum() == 0


def test_missing_field_lists_the_fields(tmp_path: Path, flood_label):
    _, _, crs, _ = flood_label
    gpd.GeoDataFrame({"name": ["a", "b"], "area": [1, 2]}, geometry=[Point(0, 0)] * 2, crs=crs).to_file(
        tmp_path / "l.gpkg"
    )
    with pytest.raises(InputError, match=r"no field 'class'.*\['name', 'area'\]"):
        read_labels(tmp_path / "l.gpkg", "class")


def test_one_class_and_unreadable_files_are_refused(tmp_path: Path, flood_label):
    _, _, crs, _ = flood_label
    gpd.GeoDataFrame({"kind": ["a", "a"]}, geometry=[Point(0, 0)] * 2, crs=crs).to_file(tmp_path / "one.gpkg")
    with pytest.raises(InputError, match=r"1 class \['a'\].*at least two"):
        read_labels(tmp_path / "one.gpkg", "kind")
    (tmp_path / "bad.gpkg").write_bytes(b"not a geopackage at all")
    with pytest.raises(InputError, match="bad.gpkg: cannot read it as a vector file"):
        read_labels(tmp_path / "bad.gpkg", "kind")
    with pytest.raises(InputError, match="labels file not found"):
        read_labels(tmp_path / "missing.gpkg", "kind")
