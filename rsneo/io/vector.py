"""Class maps to GeoPackage polygons with areas, strip by strip so memory stays flat.

Areas are in hectares: geodesic on the CRS's ellipsoid (pyproj.Geod) when the CRS is geographic, planar in the
CRS's linear unit otherwise. A raster without a CRS (a PNG pair) gets pixel units: `area_px` instead of
`area_ha`. Polygons are cut at strip boundaries (every `strip_rows` rows); per-class area sums are unaffected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from rsneo.io.cog import GDAL_ENV, NODATA_CLASS, ClassLegend, hidden_path, open_raster, read_legend

LAYER = "classes"


def area_function(crs: rasterio.crs.CRS | None):
    """Return geometry -> area in hectares for `crs` (None when the raster has no CRS: pixel units)."""
    if crs is None:
        return None
    from pyproj import CRS

    pcrs = CRS.from_user_input(crs.to_wkt())
    if pcrs.is_geographic:
        geod = pcrs.get_geod()
        return lambda geom: abs(geod.geometry_area_perimeter(geom)[0]) / 1e4
    metres = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return lambda geom: geom.area * metres * metres / 1e4


def row_pixel_areas(crs: rasterio.crs.CRS | None, transform: rasterio.Affine, rows: np.ndarray) -> np.ndarray:
    """Area of one pixel in each of `rows`: hectares (geodesic for a geographic CRS), 1 without a CRS."""
    area_of = area_function(crs)
    if area_of is None:
        return np.ones(len(rows))
    from shapely.geometry import box

    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        (x0, y0), (x1, y1) = transform @ (0, int(row)), transform @ (1, int(row) + 1)
        out[i] = area_of(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return out


def class_areas(
    cog_path: Path, legend: ClassLegend | None = None, strip_rows: int = 1024
) -> dict[str, float]:
    """Area per class name of a class-map COG (hectares, or pixels without a CRS), read strip by strip.

    The key "" holds the area of all valid (not nodata) pixels.
    """
    legend = legend or read_legend(cog_path)
    totals = dict.fromkeys(legend.names, 0.0)
    totals[""] = 0.0
    with rasterio.Env(**GDAL_ENV), open_raster(cog_path) as src:
        geographic = src.crs is not None and src.crs.is_geographic
        for top in range(0, src.height, strip_rows):
            window = Window(0, top, src.width, min(strip_rows, src.height - top))
            block = src.read(1, window=window)  # (rows, cols)
            rows = np.arange(top, top + block.shape[0])
            if geographic:
                per_row = row_pixel_areas(src.crs, src.transform, rows)  # (rows,)
            else:
                per_row = np.full(len(rows), row_pixel_areas(src.crs, src.transform, rows[:1])[0])
            for value, name in enumerate(legend.names):
                counts = (block == value).sum(1)  # (rows,)
                totals[name] += float((counts * per_row).sum())
            totals[""] += float(((block != NODATA_CLASS).sum(1) * per_row).sum())
    return totals


def class_polygons(
    classes: np.ndarray, transform: rasterio.Affine, legend: ClassLegend, skip: tuple[int, ...] = ()
) -> list[dict]:
    """Connected regions of each class in one block as records {class_id, class_name, geometry}."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    valid = (classes != NODATA_CLASS) & (classes < len(legend.names))
    for value in skip:
        valid &= classes != value
    records = []
    for geom, value in shapes(classes, mask=valid, transform=transform, connectivity=4):
        value = int(value)
        records.append({"class_id": value, "class_name": legend.names[value], "geometry": shape(geom)})
    return records


def write_class_polygons(
    cog_path: Path,
    gpkg_path: Path,
    legend: ClassLegend | None = None,
    skip: tuple[int, ...] = (),
    strip_rows: int = 1024,
) -> dict[str, float]:
    """Polygonise the class band of `cog_path` into layer `classes` of `gpkg_path`; returns area per class
    name.

    Columns: class_id, class_name, area_ha (or area_px without a CRS). `skip` lists class values to leave out
    (e.g. "no change"). Written to a hidden name and renamed when complete.
    """
    import geopandas as gpd

    gpkg_path = Path(gpkg_path)
    legend = legend or read_legend(cog_path)
    partial = hidden_path(gpkg_path, "partial.gpkg")
    partial.unlink(missing_ok=True)
    totals = {name: 0.0 for i, name in enumerate(legend.names) if i not in skip}
    wrote = False
    try:
        with rasterio.Env(**GDAL_ENV), open_raster(cog_path) as src:
            area_of = area_function(src.crs)
            unit = "area_ha" if area_of is not None else "area_px"
            for top in range(0, src.height, strip_rows):
                window = Window(0, top, src.width, min(strip_rows, src.height - top))
                block = src.read(1, window=window)
                records = class_polygons(block, src.window_transform(window), legend, skip)
                if not records:
                    continue
                frame = gpd.GeoDataFrame(records, geometry="geometry", crs=src.crs)
                frame[unit] = [area_of(g) if area_of else g.area for g in frame.geometry]
                for name, area in frame.groupby("class_name")[unit].sum().items():
                    totals[name] += float(area)
                frame.to_file(partial, layer=LAYER, driver="GPKG", mode="a" if wrote else "w")
                wrote = True
            if not wrote:  # an empty but valid layer, so the file always opens
                empty = gpd.GeoDataFrame(
                    {"class_id": [], "class_name": [], unit: []}, geometry=[], crs=src.crs
                )
                empty.to_file(partial, layer=LAYER, driver="GPKG")
        os.replace(partial, gpkg_path)
    finally:
        partial.unlink(missing_ok=True)
    return totals
