"""The pixel grid a scene lives on: CRS, affine transform and size, explicit as in TorchGeo."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rsneo.errors import InputError


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


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_series(
    paths: Sequence[str | Path],
    sensors: Sequence[str],
    bands: Sequence[Sequence[str]],
    grids: Sequence[Grid],
    target: Grid | None = None,
) -> None:
    """The checks every series of dates passes before it is put on one grid (training scenes, `rsneo change`
    and `ask`), so each refuses the same inputs with the same words: one sensor and one band list, every
    date georeferenced or none, the same size when none is (compared pixel by pixel), and each date
    overlapping `target` (default: the first date's grid).
    """
    first, target = paths[0], target or grids[0]
    for path, sensor, names in zip(paths[1:], sensors[1:], bands[1:], strict=True):
        if sensor != sensors[0] or list(names) != list(bands[0]):
            raise InputError(
                f"{path}: sensor {sensor} with bands {list(names)} differs from {first} "
                f"(sensor {sensors[0]}, bands {list(bands[0])}); "
                "expected every date from the same sensor with the same bands (pass subset= / --bands)"
            )
    for path, grid in zip(paths[1:], grids[1:], strict=True):
        if (grid.crs is None) != (grids[0].crs is None):
            missing = path if grid.crs is None else first
            raise InputError(
                f"{missing}: has no CRS; expected one to reproject the dates onto one grid "
                f"({first} and {path}), or none on every date (same-size images compared pixel by pixel)"
            )
        if target.crs is None and grid.width_height != grids[0].width_height:
            raise InputError(
                f"{path}: has no georeference and is {grid.width}x{grid.height} pixels; expected "
                f"{grids[0].width}x{grids[0].height} like {first} to compare them pixel by pixel"
            )
        bounds = grid.bounds
        if target.crs is not None and grid.crs != target.crs:
            bounds = transform_bounds(grid.crs, target.crs, *bounds, densify_pts=21)
        if not _overlaps(bounds, target.bounds):
            raise InputError(
                f"{path} does not overlap {first}: expected intersecting extents "
                f"(rasters of the same place), found "
                f"{tuple(round(v, 3) for v in bounds)} vs {tuple(round(v, 3) for v in target.bounds)}"
            )
