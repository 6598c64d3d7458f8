"""Checks made before any work starts: a raster small enough to process, disk room for the outputs, and
some valid pixels. Each failure is an InputError naming the file, what was found and what was expected.

A VRT can declare any size (10^6 x 10^6 pixels in a few hundred bytes); without these checks `info` would
read it for hours and `segment` would start writing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from rsneo.errors import InputError
from rsneo.io.read import RasterSource, open_dataset

MAX_PIXELS = 2**33  # ~8.6e9 pixels (a 90,000-pixel square): days of CPU work; crop first beyond that
SAMPLE_SIDE = 512  # the valid-pixel check reads at most this many pixels a side (overviews where present)


def max_pixels() -> int:
    """The pixel cap; RSNEO_MAX_PIXELS raises (or lowers) it for a machine that can do more."""
    return int(float(os.environ.get("RSNEO_MAX_PIXELS", MAX_PIXELS)))


def check_size(source: RasterSource) -> None:
    """Refuse a raster larger than the pixel cap before anything reads it."""
    width, height = source.grid.width, source.grid.height
    if width * height > max_pixels():
        raise InputError(
            f"{source.path}: {width:,} x {height:,} pixels ({width * height:.3g}) is more than rsneo "
            f"processes in one run ({max_pixels():.3g}, RSNEO_MAX_PIXELS); expected a smaller raster: "
            "crop it first (gdal_translate -srcwin)"
        )


def check_disk(source: RasterSource, out: Path, bytes_per_pixel: float) -> None:
    """Refuse when the outputs (about `bytes_per_pixel` per input pixel) cannot fit where they go."""
    folder = Path(out).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    need = source.grid.width * source.grid.height * bytes_per_pixel
    free = shutil.disk_usage(folder).free
    if need > free:
        raise InputError(
            f"{source.path}: its outputs need about {byte_size(need)} in {out}, but {folder} has "
            f"{byte_size(free)} free; expected room for them (free some space or choose another --out)"
        )


def byte_size(n: float) -> str:
    """A size a person reads at a glance: GB from 1 GB up, MB below (never "0.0 GB")."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def check_has_valid_pixels(source: RasterSource) -> None:
    """Refuse a raster whose every pixel is nodata, NaN or infinite.

    A decimated read answers at once for almost every raster; only when that finds nothing are the blocks read
    in full (stopping at the first valid one), so a small valid patch is never missed. Float rasters are read
    as values, not only as GDAL's mask: a NaN raster without a nodata tag has a mask that says "all valid".
    """
    src = open_dataset(source.files[0].path)
    scale = max(1, max(src.width, src.height) // SAMPLE_SIDE)
    shape = (max(1, src.height // scale), max(1, src.width // scale))
    found = _valid_reads(src, [{"out_shape": shape}])
    if scale > 1 and found != "valid":
        blocks = _valid_reads(src, [{"window": w} for _, w in src.block_windows(1)])
        found = blocks if blocks != "none" else found
    if found == "valid":
        return
    nodata = "" if src.nodata is None else f" (nodata value {src.nodata:g})"
    if found == "non-finite":
        nodata += " or NaN/infinite"
    raise InputError(f"{source.path}: every pixel is nodata{nodata}; expected some valid pixels")


def _valid_reads(src, reads: list[dict]) -> str:
    """What the reads hold: "valid" (stopping at the first read with a valid pixel), else "non-finite" where
    GDAL's mask kept pixels whose float values are NaN or infinite in some band, else "none"."""
    floating = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
    found = "none"
    for read in reads:
        mask = src.dataset_mask(**read) > 0
        if not mask.any():
            continue
        if not floating or (mask & np.isfinite(src.read(**read)).all(0)).any():
            return "valid"
        found = "non-finite"
    return found
