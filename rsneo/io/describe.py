"""What `rsneo info` prints about a raster: sensor, bands, grid, date, nodata, statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rsneo.io.read import open_source, read_source

STATS_MAX_SIDE = 1024


def describe_raster(
    path: str | Path, sensor: str | None = None, bands: list[str] | None = None
) -> dict[str, Any]:
    """JSON-ready facts about one raster; statistics from a read of at most `STATS_MAX_SIDE` pixels a side."""
    source = open_source(path, sensor, bands)
    grid = source.grid
    side = max(grid.width, grid.height)
    if side > STATS_MAX_SIDE and grid.crs is not None:
        grid = grid.resampled(max(grid.res) * side / STATS_MAX_SIDE)
    data = read_source(source, grid)  # (bands, y, x)
    valid = np.isfinite(data)  # read_source gives NaN for nodata, NaN and inf
    band_rows = []
    for band, values, ok in zip(source.bands, data, valid, strict=True):
        v = values[ok].astype(np.float64)
        stats = (v.min(), v.max(), v.mean(), v.std()) if v.size else (None,) * 4
        band_rows.append(
            {
                "name": band.name,
                "common_name": band.common_name,
                "wavelength_um": band.wavelength,
                **{
                    k: None if s is None else float(s)
                    for k, s in zip(("min", "max", "mean", "std"), stats, strict=True)
                },
            }
        )
    crs = source.grid.crs
    return {
        "path": source.path,
        "sensor": source.sensor.name,
        "crs": "" if crs is None else (crs.to_string() if crs.to_epsg() else crs.to_wkt()),
        "resolution": list(source.grid.res),
        "width": source.grid.width,
        "height": source.grid.height,
        "bounds": list(source.grid.bounds),
        "date": None if source.date is None else str(source.date),
        "dtype": source.dtype,
        "nodata_value": source.nodata,
        "nodata_fraction": float(1 - valid.mean()),
        "bands": band_rows,
    }
