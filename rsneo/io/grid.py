"""The pixel grid a scene lives on: CRS, affine transform and size, explicit as in TorchGeo."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class Grid:
    """A raster grid. `crs` is None for images without georeference (pixel units, identity transform)."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y), positive, in CRS units."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def width_height(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def window(self, window: Window) -> Grid:
        """The sub-grid covered by a pixel window of this grid."""
        return Grid(
            self.crs,
            self.transform @ Affine.translation(window.col_off, window.row_off),
            int(window.width),
            int(window.height),
        )

    def window_of_bounds(self, bounds: tuple[float, float, float, float]) -> Window:
        """The pixel window (rounded outwards) covering `bounds` in this grid's CRS."""
        left, bottom, right, top = bounds
        inv = ~self.transform
        cols, rows = zip(*(inv @ (x, y) for x, y in ((left, top), (right, bottom))), strict=True)
        c0, c1 = math.floor(min(cols) + 1e-6), math.ceil(max(cols) - 1e-6)
        r0, r1 = math.floor(min(rows) + 1e-6), math.ceil(max(rows) - 1e-6)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def resampled(self, resolution: float) -> Grid:
        """Same extent, pixels of `resolution` CRS units (size rounded to whole pixels)."""
        left, bottom, right, top = self.bounds
        width = max(1, round((right - left) / resolution))
        height = max(1, round((top - bottom) / resolution))
        return Grid(self.crs, Affine(resolution, 0, left, 0, -resolution, top), width, height)

    def overlaps(self, other: Grid) -> bool:
        """Whether the two grids' extents intersect with a positive area (same CRS assumed)."""
        a, b = self.bounds, other.bounds
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def aligned_window_in(self, other: Grid, tol: float = 1e-6) -> Window | None:
        """If this grid is a whole-pixel window of `other` (same CRS, pixel size), that window, else None."""
        if self.crs != other.crs or not all(
            math.isclose(a, b, rel_tol=tol) for a, b in zip(self.res, other.res, strict=True)
        ):
            return None
        if abs(self.transform.b) > tol or abs(self.transform.d) > tol:
            return None
        col, row = ~other.transform @ (self.transform.c, self.transform.f)
        if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
            return None
        return Window(round(col), round(row), self.width, self.height)

    def contains_window(self, window: Window) -> bool:
        return (
            window.col_off >= 0
            and window.row_off >= 0
            and window.col_off + window.width <= self.width
            and window.row_off + window.height <= self.height
        )
