"""The opened-dataset layer under the readers: one cached opener and the description of one acquisition.

`read` (rasters, folders) and `stac` (STAC items) both build a `RasterSource` from datasets opened here, so
neither needs the other and each file's header is read once per process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rsneo.errors import InputError
from rsneo.io.grid import Grid
from rsneo.sensors import Band, Sensor


@dataclass(frozen=True)
class BandFile:
    """Where one band lives: a file and its 1-based band index."""

    path: str
    index: int


@dataclass
class RasterSource:
    """One acquisition: which sensor bands it holds, where each is stored, its date and its working grid.

    `grid` is the finest band's grid (mixed-resolution folders are resampled onto it).
    """

    path: str
    sensor: Sensor
    bands: list[Band]
    files: list[BandFile]
    grid: Grid
    date: np.datetime64 | None
    dtype: str
    nodata: float | None

    @property
    def georeferenced(self) -> bool:
        return self.grid.crs is not None


_HANDLES: dict[tuple[int, str], rasterio.DatasetReader] = {}
MAX_OPEN = 256


@contextmanager
def gdal_errors(path: str, action: str = "read") -> Iterator[None]:
    """Turn GDAL failures on `path` into an InputError naming the file (truncated, corrupt, not a raster)."""
    try:
        yield
    except RasterioError as exc:
        raise InputError(
            f"{path}: cannot {action} it as a raster; the file may be truncated or corrupt (GDAL: {exc})"
        ) from None


def open_dataset(path: str) -> rasterio.DatasetReader:
    """An open dataset for `path`, cached per process (workers each open their own; headers read once).

    At most `MAX_OPEN` stay open; the least recently used is closed first (archives have many files).
    """
    key = (os.getpid(), path)
    if key in _HANDLES:
        _HANDLES[key] = _HANDLES.pop(key)  # most recently used last
        return _HANDLES[key]
    if not Path(path).exists():
        raise InputError(f"{path}: file not found")
    with gdal_errors(path, "open"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        handle = rasterio.open(path)
    while len(_HANDLES) >= MAX_OPEN:
        oldest = next(iter(_HANDLES))
        _HANDLES.pop(oldest).close()
    _HANDLES[key] = handle
    return handle


def close_datasets() -> None:
    """Close every cached dataset of this process (tests, long-running servers)."""
    for key in [k for k in _HANDLES if k[0] == os.getpid()]:
        _HANDLES.pop(key).close()


def dataset_grid(src: rasterio.DatasetReader) -> Grid:
    """The grid of an open dataset; no CRS and an identity transform mean pixel units."""
    georef = src.crs is not None and not (src.transform == Affine.identity() and not src.gcps[0])
    return Grid(src.crs if georef else None, src.transform, src.width, src.height)
