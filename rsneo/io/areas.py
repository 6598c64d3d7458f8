"""True ground area of raster pixels, in square metres, for any CRS; pixel counts for rasters without one.

A planar area in the raster's CRS is wrong wherever the projection is not equal-area (Web Mercator inflates
areas by 1/cos^2(latitude); geographic degrees are not lengths at all). So pixel areas are measured on the
CRS's own ellipsoid:

- north-up grids in a geographic CRS or a normal-aspect Mercator: a pixel is a cell between two meridians and
  two parallels, whose ellipsoidal area has a closed form (the authalic latitude); it depends on the row only.
- any other grid: pixel corners are projected into a Lambert azimuthal equal-area frame centred on the raster
  (same geodetic datum) and each pixel's quadrilateral is measured there.

A raster without a CRS is measured in pixels (1 per pixel): its transform's units are not lengths.
Every area rsneo reports (GeoPackage, change table, report, answers) goes through `PixelAreas`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

SQ_M_PER_HA = 1e4
COLUMN_STEP = 16  # columns between exact measurements on grids whose pixel area varies along a row


def _authalic_q(lat_rad: np.ndarray, e: float) -> np.ndarray:
    """q(phi) of the authalic latitude: the area between the equator and phi is a^2/2 * dlon * q."""
    s = np.sin(lat_rad)
    if e < 1e-12:  # a sphere
        return 2.0 * s
    es = e * s
    return (1.0 - e * e) * (s / (1.0 - es * es) - np.log((1.0 - es) / (1.0 + es)) / (2.0 * e))


@dataclass
class PixelAreas:
    """Area of every pixel of one raster grid: `rows(top, n)` -> (n, width) or (n, 1) array.

    `unit` is "ha" (hectares) for a raster with a CRS and "px" (pixel counts) without one.
    """

    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        self.unit = "px" if self.crs is None else "ha"
        self._row_only = False
        self._to_frame = None
        if self.crs is not None:  # the same grid is measured several times per product: set up once
            self.__dict__.update(
                _projection(self.crs.to_wkt(), tuple(self.transform)[:6], self.width, self.height)
            )

    @property
    def per_row(self) -> bool:
        """True when a pixel's area depends on its row only (no CRS, geographic or Mercator north-up)."""
        return self.crs is None or self._row_only or hasattr(self, "_planar_m2")

    def rows(self, top: int, n: int) -> np.ndarray:
        """Areas of the pixels of rows [top, top + n): hectares (or 1 per pixel without a CRS).

        Shape (n, 1) when `per_row`, else (n, width); float64.
        """
        if self.crs is None:
            return np.ones((n, 1))
        if hasattr(self, "_planar_m2"):
            return np.full((n, 1), self._planar_m2 / SQ_M_PER_HA)
        if self._row_only:
            return self._cell_areas(top, n)[:, None] / SQ_M_PER_HA
        return self._frame_areas(top, n) / SQ_M_PER_HA

    def _cell_areas(self, top: int, n: int) -> np.ndarray:
        """(n,) m^2 of the cells of column 0: exact ellipsoidal areas between two meridians and parallels."""
        edges = np.arange(top, top + n + 1, dtype=np.float64)
        t = self.transform
        xs0 = np.full(n + 1, t.c)
        xs1 = np.full(n + 1, t.c + t.a)
        ys = t.f + t.e * edges
        lon0, lat = self._to_lonlat.transform(xs0, ys)
        lon1, _ = self._to_lonlat.transform(xs1, ys)
        dlon = np.radians(np.abs(np.asarray(lon1) - np.asarray(lon0)))  # (n + 1,) equal on every row
        q = _authalic_q(np.radians(np.asarray(lat)), self._e)
        return 0.5 * self._a**2 * dlon[:-1] * np.abs(np.diff(q))

    def _frame_areas(self, top: int, n: int) -> np.ndarray:
        """(n, width) m^2: pixel corners in the equal-area frame, each quadrilateral's area from diagonals.

        Measured exactly at every `COLUMN_STEP`-th column (and the last) of every row, interpolated linearly
        between: a projection's area scale is smooth (1.4e-7 relative error for 300 m pixels 400 km off a UTM
        zone's centre; it shrinks with the square of the pixel size).
        """
        sample = np.unique(np.r_[np.arange(0, self.width, COLUMN_STEP), self.width - 1]).astype(np.float64)
        rows = np.arange(top, top + n + 1, dtype=np.float64)
        c, r = np.meshgrid(np.stack([sample, sample + 1], 1).ravel(), rows)  # (n + 1, 2 * samples)
        x, y = self.transform @ (c, r)
        fx, fy = self._to_frame.transform(np.ravel(x), np.ravel(y))
        fx = np.asarray(fx).reshape(n + 1, -1, 2)
        fy = np.asarray(fy).reshape(n + 1, -1, 2)
        # diagonals (r, c) -> (r + 1, c + 1) and (r, c + 1) -> (r + 1, c)
        d1x, d1y = fx[1:, :, 1] - fx[:-1, :, 0], fy[1:, :, 1] - fy[:-1, :, 0]
        d2x, d2y = fx[1:, :, 0] - fx[:-1, :, 1], fy[1:, :, 0] - fy[:-1, :, 1]
        measured = 0.5 * np.abs(d1x * d2y - d1y * d2x)  # (n, samples)
        if len(sample) == self.width:
            return measured
        cols = np.arange(self.width, dtype=np.float64)
        right = np.clip(np.searchsorted(sample, cols, side="right"), 1, len(sample) - 1)
        w = (cols - sample[right - 1]) / (sample[right] - sample[right - 1])
        return measured[:, right - 1] * (1.0 - w) + measured[:, right] * w

    def class_totals(self, classes: np.ndarray, top: int, values: int = 256) -> np.ndarray:
        """(values,) area of each class value in `classes` (rows top.., all columns)."""
        per_pixel = np.broadcast_to(self.rows(top, classes.shape[0]), classes.shape)
        return np.bincount(classes.ravel(), weights=per_pixel.ravel(), minlength=values)

    @classmethod
    def of(cls, dataset: rasterio.io.DatasetReaderBase) -> PixelAreas:
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height)


@functools.lru_cache(maxsize=32)
def _projection(wkt: str, transform: tuple[float, ...], width: int, height: int) -> dict[str, Any]:
    """PixelAreas' measuring set-up for one grid: planar factor, or ellipsoid and pyproj transformers (about
    4 ms each to build, so a batch of small files would spend more on them than on measuring)."""
    from pyproj import CRS, Transformer
    from pyproj.crs import ProjectedCRS
    from pyproj.crs.coordinate_operation import LambertAzimuthalEqualAreaConversion

    affine = rasterio.Affine(*transform)
    pcrs = CRS.from_user_input(wkt)
    geodetic = pcrs.geodetic_crs
    if geodetic is None:  # an engineering CRS: planar in its own linear unit is all there is
        unit = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
        return {"_planar_m2": abs(affine.a * affine.e - affine.b * affine.d) * unit * unit}
    ellipsoid = geodetic.ellipsoid
    inv_f = ellipsoid.inverse_flattening
    f = 0.0 if not inv_f or math.isinf(inv_f) else 1.0 / inv_f
    setup: dict[str, Any] = {"_a": ellipsoid.semi_major_metre, "_e": math.sqrt(max(2 * f - f * f, 0.0))}
    north_up = affine.b == 0 and affine.d == 0
    method = "" if pcrs.is_geographic else (pcrs.coordinate_operation.method_name or "").lower()
    cylindrical = pcrs.is_geographic or ("mercator" in method and "transverse" not in method
                                         and "oblique" not in method)  # fmt: skip
    lonlat = geodetic.to_2d() if hasattr(geodetic, "to_2d") else geodetic
    setup["_to_lonlat"] = Transformer.from_crs(pcrs, lonlat, always_xy=True)
    if north_up and cylindrical:
        return setup | {"_row_only": True}
    cx, cy = affine @ (width / 2, height / 2)
    lon0, lat0 = setup["_to_lonlat"].transform(cx, cy)
    frame = ProjectedCRS(LambertAzimuthalEqualAreaConversion(lat0, lon0), geodetic_crs=lonlat)
    return setup | {"_to_frame": Transformer.from_crs(pcrs, frame, always_xy=True)}


def format_area(value: float, unit: str) -> str:
    """ "12,345.67 ha" or "10,405 pixels" (pixel counts are integers)."""
    return f"{round(value):,d} pixels" if unit == "px" else f"{value:,.2f} ha"
