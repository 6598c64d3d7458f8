"""A reference sample read against a class map: for each reference point or polygon, the map's class there.

Features come from any vector file GDAL reads, in any CRS, reprojected to the map (`rsneo.io.labels`). Each
feature is one sampling unit (Stehman and Wickham 2011: pixels, blocks and polygons as assessment units): a
point takes the map class of the pixel under it, a polygon the majority map class of the pixels whose centres
it covers (the pixel under its representative point when it covers no centre; ties go to the first class in
the map's order). Units on no valid map pixel are outside the map and left out (counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.dataset import dataset_grid, open_raster
from rsneo.io.grid import Grid
from rsneo.io.labels import LabelFile, burn, read_class_features, reprojected

SAMPLED_GEOMETRIES = {"Point", "MultiPoint", "Polygon", "MultiPolygon"}


@dataclass(frozen=True)
class ReferenceSample:
    """Map and reference class (indices into the map's classes) of every unit that lies on the map."""

    path: Path
    field: str
    map_class: np.ndarray  # (units,) int64
    reference_class: np.ndarray  # (units,) int64
    features: int  # features read from the file
    outside: int  # features on no valid map pixel (left out)
    kinds: tuple[str, ...]  # geometry types present ("Point", "Polygon", ...)


def match_classes(labels: LabelFile, map_path: Path, map_classes: tuple[str, ...]) -> np.ndarray:
    """(features,) index of each feature's class among the map's (case and spaces ignored); a reference
    class the map does not have is an InputError naming both files."""
    index = {name.strip().lower(): i for i, name in enumerate(map_classes)}
    unknown = sorted({c for c in labels.classes if c.lower() not in index})
    if unknown:
        raise InputError(
            f"{labels.path}: field {labels.field!r} holds classes {unknown} that the map {map_path} does not "
            f"have; expected the map's class names {list(map_classes)}"
        )
    return np.array([index[c.lower()] for c in labels.frame["class_name"]], np.int64)


def unit_class(geometry, map_values: np.ndarray, grid: Grid, classes: int) -> int | None:
    """The map class of one unit on `grid` (the window of the map that holds it), None off valid pixels."""
    covered = burn([geometry], np.zeros(1, np.int64), grid) == 0
    values = map_values[covered]
    values = values[values < classes]  # the map's nodata (255) and values without a class name
    if not values.size:
        return None
    return int(np.bincount(values, minlength=classes).argmax())


def read_reference(path: Path, field: str, map_path: Path, map_classes: tuple[str, ...]) -> ReferenceSample:
    """The reference features of `path` (class in `field`) against the class map at `map_path`."""
    labels = read_class_features(path, field)
    if labels.frame.empty:
        raise InputError(
            f"{labels.path}: no feature with a geometry and a class in field {field!r}; expected reference "
            "points or polygons, each with its class"
        )
    kinds = tuple(sorted(set(labels.frame.geometry.geom_type)))
    if set(kinds) - SAMPLED_GEOMETRIES:
        raise InputError(
            f"{labels.path}: holds {sorted(set(kinds) - SAMPLED_GEOMETRIES)} features; expected points or "
            "polygons as reference units"
        )
    reference = match_classes(labels, map_path, map_classes)
    map_class, keep = [], []
    with open_raster(map_path) as src:
        grid = dataset_grid(src)
        for i, geometry in enumerate(reprojected(labels, grid)):
            window = _unit_window(geometry, grid)
            if window is None:
                continue
            values = src.read(1, window=window)
            found = unit_class(geometry, values, grid.window(window), len(map_classes))
            if found is not None:
                map_class.append(found)
                keep.append(i)
    return ReferenceSample(
        labels.path,
        field,
        np.array(map_class, np.int64),
        reference[np.array(keep, np.int64)],
        len(labels.frame),
        len(labels.frame) - len(keep),
        kinds,
    )


def _unit_window(geometry, grid: Grid) -> Window | None:
    """The window of `grid` around one geometry (a pixel of margin), None when it misses the grid."""
    left, bottom, right, top = geometry.bounds
    window = grid.window_of_bounds((left, bottom, right, top))
    col0, row0 = max(window.col_off - 1, 0), max(window.row_off - 1, 0)
    col1 = min(window.col_off + window.width + 1, grid.width)
    row1 = min(window.row_off + window.height + 1, grid.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)
