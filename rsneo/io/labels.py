"""Training labels drawn in a GIS: polygons or points with a class field, burnt onto a raster's pixel grid.

Any vector file GDAL reads (GeoPackage, Shapefile, GeoJSON, ...) in any CRS; features are reprojected to each
raster's CRS. A label file without a CRS is taken to be in the raster's own coordinates (pixel units for an
image without georeference). Each feature stays one unit (`feature` index), so a hold-out can keep whole
polygons apart. Pixels claimed by two classes are left unlabelled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsneo.errors import InputError, RSNeoWarning
from rsneo.io.grid import Grid

UNLABELLED = -1


class LabelRepairWarning(RSNeoWarning):
    """Invalid label geometries were repaired on reading (their count is in the message)."""


@dataclass
class LabelFile:
    """The features of one label file: geometries, their class names and the sorted class list."""

    path: Path
    field: str
    frame: object  # geopandas.GeoDataFrame with columns `class_name`, `geometry`
    classes: list[str]
    repaired: int = 0  # invalid geometries made valid on reading

    @property
    def class_ids(self) -> np.ndarray:
        """(features,) index of each feature's class in `classes`."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[n] for n in self.frame["class_name"]], np.int64)


def _class_name(value: object) -> str:
    """A field value as a class name: 3.0 -> "3", "  forest " -> "forest"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_class_features(path: Path | str, field: str) -> LabelFile:
    """Read a vector file's features that have a geometry and a class in `field` (any number of classes);
    an unreadable file or a missing field raises InputError."""
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: labels file not found")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio / fiona raise their own DataSourceError types
        raise InputError(
            f"{path}: cannot read it as a vector file (GeoPackage, Shapefile, GeoJSON): {exc}"
        ) from None
    if frame.empty:  # no feature, so no field either
        return LabelFile(path, field, frame.assign(class_name=[])[["class_name", frame.geometry.name]], [])
    if field not in frame.columns:
        fields = [c for c in frame.columns if c != frame.geometry.name]
        raise InputError(f"{path}: has no field {field!r}; its fields are {fields} (pass --class-field NAME)")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty & frame[field].notna()]
    frame, repaired = _repaired(frame)
    if repaired:
        warnings.warn(
            f"{path}: {repaired} invalid geometr{'y' if repaired == 1 else 'ies'} (self-intersecting or "
            "badly ringed) repaired with shapely.make_valid",
            LabelRepairWarning,
            stacklevel=2,
        )
    frame = frame.assign(class_name=[_class_name(v) for v in frame[field]])
    frame = frame[frame["class_name"] != ""]
    classes = sorted(set(frame["class_name"]))
    frame = frame[["class_name", frame.geometry.name]].reset_index(drop=True)
    return LabelFile(path, field, frame, classes, repaired)


def _repaired(frame):
    """The frame with every invalid geometry made valid (`shapely.make_valid`; of a polygon, its areas only:
    the lines and points a repair can leave along a self-intersection are no label), and how many were."""
    import shapely

    geometry = frame.geometry.values
    invalid = ~shapely.is_valid(geometry)
    if not invalid.any():
        return frame, 0
    fixed = shapely.make_valid(geometry[invalid])
    polygonal = np.isin(shapely.get_type_id(geometry[invalid]), (3, 6))  # Polygon, MultiPolygon
    fixed = np.array(
        [_areas_of(g) if keep else g for g, keep in zip(fixed, polygonal, strict=True)], dtype=object
    )
    geometry = geometry.copy()
    geometry[invalid] = fixed
    frame = frame.set_geometry(geometry, crs=frame.crs)
    return frame[~frame.geometry.is_empty], int(invalid.sum())


def _areas_of(geom):
    """The polygonal part of a repaired geometry (a collection may also hold a line where a ring touched
    itself)."""
    import shapely

    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def read_labels(path: Path | str, field: str) -> LabelFile:
    """Read a vector label file; bad files, a missing field or fewer than two classes raise InputError."""
    labels = read_class_features(path, field)
    classes = labels.classes
    if labels.frame.empty:
        raise InputError(
            f"{labels.path}: no labelled feature (the file is empty, or none of its features has both a "
            f"geometry and a class in field {field!r}); expected polygons or points, each with its class"
        )
    if len(classes) < 2:
        raise InputError(
            f"{labels.path}: field {field!r} holds {len(classes)} class{'' if len(classes) == 1 else 'es'} "
            f"{classes} in {len(labels.frame)} features; expected at least two classes to learn from"
        )
    return labels


def reprojected(labels: LabelFile, grid: Grid):
    """The label geometries (GeoSeries) in the grid's coordinates."""
    geometry = labels.frame.geometry
    if grid.crs is None or geometry.crs is None:
        if grid.crs is None and geometry.crs is not None:
            raise InputError(
                f"{labels.path}: the labels have a CRS ({geometry.crs.to_string()}) but the raster has no "
                "georeference; expected labels drawn in the image's pixel coordinates (no CRS)"
            )
        return geometry.set_crs(None, allow_override=True)
    return geometry.to_crs(grid.crs)


def burn(geometries, values: np.ndarray, grid: Grid, fill: int = UNLABELLED) -> np.ndarray:
    """(height, width) int64: each feature's value where it covers the pixel centre (points: their pixel).

    A polygon too small to cover any pixel centre burns the pixel under its representative point, so no
    feature the user drew is silently dropped when it lies on the raster.
    """
    from rasterio.features import rasterize

    out = np.full((grid.height, grid.width), fill, np.int64)
    shapes = [
        (g, int(v)) for g, v in zip(geometries, values, strict=True) if g is not None and not g.is_empty
    ]
    if not shapes:
        return out
    out = rasterize(shapes, out_shape=out.shape, transform=grid.transform, fill=fill, dtype="int64")
    burnt = set(np.unique(out).tolist())
    inverse = ~grid.transform
    for geom, value in shapes:
        if value in burnt:
            continue
        x, y = geom.representative_point().coords[0]
        col, row = (int(np.floor(v)) for v in inverse @ (x, y))
        if 0 <= row < grid.height and 0 <= col < grid.width:
            out[row, col] = value
    return out


@dataclass
class BurntLabels:
    """Labels of one raster: class index per pixel (-1 none) and the feature each labelled pixel came from."""

    classes: np.ndarray  # (height, width) int64, UNLABELLED where no (or conflicting) label
    feature: np.ndarray  # (height, width) int64 feature index, UNLABELLED where `classes` is


def burn_labels(labels: LabelFile, grid: Grid, features: np.ndarray | None = None) -> BurntLabels:
    """Burn the features numbered `features` (default: all) onto `grid`; conflicting classes are dropped."""
    geometry = reprojected(labels, grid)
    keep = np.arange(len(geometry)) if features is None else np.asarray(features, np.int64)
    class_ids = labels.class_ids[keep]
    geoms = list(geometry.iloc[keep])
    feature = burn(geoms, keep, grid)
    classes = np.where(feature >= 0, labels.class_ids[np.maximum(feature, 0)], UNLABELLED)
    for k in range(len(labels.classes)):  # pixels also covered by another class's feature are ambiguous
        mine = [g for g, c in zip(geoms, class_ids, strict=True) if c == k]
        if not mine or len(mine) == len(geoms):
            continue
        covered = burn(mine, np.zeros(len(mine), np.int64), grid) == 0
        classes[covered & (classes != k)] = UNLABELLED
    feature[classes == UNLABELLED] = UNLABELLED
    return BurntLabels(classes, feature)
