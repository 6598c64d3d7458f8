"""Scenes: one or more acquisitions of one place on one grid, as an xarray DataArray (time, band, y, x).

The grid is the first date's grid (optionally at another `resolution`, cut to a `window` or `bounds`); later
dates are resampled and reprojected onto it, so a series whose grids are shifted by a pixel (NAIP) lines up.
Values are float32 in the sensor's stored units; NaN marks nodata (`valid_mask`).

Coordinates: `time` (datetime64, NaT when unknown), `band` (sensor band names) with `wavelength`
(micrometres), `common_name` and `group` along it, `y`/`x` pixel centres. Attributes: `sensor`, `crs` (WKT, ""
for pixel units), `transform` (6 affine coefficients), `units`, `dtype` (stored type), `sources` (paths).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.grid import Grid, check_series
from rsneo.io.read import BandFile, RasterSource, open_source, read_band, read_source, select_bands
from rsneo.sensors import Band, Sensor, get_sensor

PathLike = str | Path


def scene_grid(
    first: RasterSource,
    window: Window | tuple[int, int, int, int] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    resolution: float | None = None,
) -> Grid:
    """The grid a scene is read onto: `first`'s grid, resampled, then cut to a pixel window or bounds."""
    if first.grid.crs is None and resolution is not None:
        raise InputError(f"{first.path}: has no CRS; expected one to resample to resolution {resolution}")
    grid = first.grid if resolution is None else first.grid.resampled(resolution)
    if bounds is not None:
        if grid.crs is None:
            raise InputError(f"{first.path}: has no CRS; expected one to select bounds {bounds}")
        window = grid.window_of_bounds(bounds)
    if window is not None:
        window = window if isinstance(window, Window) else Window(*window)
        if window.width <= 0 or window.height <= 0:
            raise InputError(f"{first.path}: expected a window with positive size, found {window}")
        cut = grid.window(window)
        if not grid.overlaps(cut):
            raise InputError(
                f"{first.path}: the window {tuple(int(v) for v in window.flatten())} "
                "(col, row, width, height) "
                f"lies outside the raster ({grid.width}x{grid.height} pixels)"
            )
        grid = cut
    return grid


def read_scene(
    paths: PathLike | Sequence[PathLike],
    sensor: str | Sensor | None = None,
    bands: list[str] | None = None,
    subset: list[str] | None = None,
    window: Window | tuple[int, int, int, int] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    resolution: float | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> xr.DataArray:
    """Read one acquisition or a series of them into a scene DataArray (time, band, y, x).

    `bands` names the files' bands in file order when their metadata does not; `subset` reads only these
    bands (names or aliases, in this order). Dates are sorted when every acquisition has one.
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise InputError("read_scene: expected at least one raster path, found none")
    sources = [select_bands(open_source(p, sensor, bands), subset) for p in paths]
    if all(s.date is not None for s in sources):
        sources.sort(key=lambda s: s.date)
    first = sources[0]
    grid = scene_grid(first, window, bounds, resolution)
    check_series(
        [s.path for s in sources],
        [s.sensor.name for s in sources],
        [[b.name for b in s.bands] for s in sources],
        [s.grid for s in sources],
        grid,
    )
    data = np.stack([read_source(s, grid, resampling) for s in sources])  # (time, band, y, x)
    if np.isnan(data).all():
        raise InputError(
            f"{first.path}: the requested window holds no valid pixels (all nodata); "
            "expected a window with data"
        )
    return to_scene(data, first.sensor, first.bands, grid, [s.date for s in sources], sources)


def to_scene(
    data: np.ndarray,
    sensor: Sensor,
    bands: list[Band],
    grid: Grid,
    dates: Sequence[np.datetime64 | None],
    sources: Sequence[RasterSource] = (),
) -> xr.DataArray:
    """Wrap a (time, band, y, x) array with the scene's coordinates and attributes."""
    t = grid.transform
    x = t.c + (np.arange(grid.width) + 0.5) * t.a
    y = t.f + (np.arange(grid.height) + 0.5) * t.e
    times = np.array([np.datetime64("NaT") if d is None else d for d in dates], dtype="datetime64[ns]")
    return xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": times,
            "band": [b.name for b in bands],
            "wavelength": ("band", [b.wavelength for b in bands]),
            "common_name": ("band", [b.common_name for b in bands]),
            "group": ("band", [b.group for b in bands]),
            "y": y,
            "x": x,
        },
        attrs={
            "sensor": sensor.name,
            "crs": grid.crs.to_wkt() if grid.crs is not None else "",
            "transform": tuple(t)[:6],
            "units": sensor.units,
            "dtype": sources[0].dtype if sources else str(data.dtype),
            "sources": [s.path for s in sources],
        },
    )


def grid_of(scene: xr.DataArray) -> Grid:
    """The grid a scene lives on."""
    crs = CRS.from_wkt(scene.attrs["crs"]) if scene.attrs.get("crs") else None
    return Grid(crs, Affine(*scene.attrs["transform"]), scene.sizes["x"], scene.sizes["y"])


def bands_of(scene: xr.DataArray) -> list[Band]:
    """The sensor bands of a scene, in its band order."""
    sensor = get_sensor(scene.attrs["sensor"])
    return [sensor.band(str(name)) for name in scene["band"].values]


def valid_mask(scene: xr.DataArray) -> np.ndarray:
    """True where a value is valid (not nodata, NaN or infinite): (time, band, y, x) bool."""
    return np.isfinite(scene.values)


def read_mask(path: PathLike, grid: Grid, band: int = 1) -> np.ndarray:
    """A label or mask raster on `grid`, nearest-neighbour (never blends classes): (y, x), NaN outside."""
    return read_band(BandFile(str(path), band), grid, Resampling.nearest)
