"""A request's rasters opened as the engine reads them: one raster on its own grid, or dates of one place on
the first date's grid, each with its `BandLayout` (band groups as the model was trained), optionally reduced
to an overview (`rsneo ask`).

Every product opens its inputs here, so a map of the same rasters sees the same pixels whichever product
asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from rsneo.data.frames import BandLayout, band_layout
from rsneo.io.read import open_input
from rsneo.io.windows import RasterWindows, aligned_datasets, overview_size, read_overview


@dataclass
class Inputs:
    """Open rasters on one grid: `datasets` (rasterio datasets, WarpedVRTs or in-memory overviews) in the
    order of `rasters`, each read as its `layouts` entry says; `crs` None means pixel units."""

    rasters: list[Path]
    layouts: list[BandLayout]
    datasets: list
    crs: CRS | None
    transform: Affine
    pixel_units: bool

    def windows(self) -> RasterWindows:
        """Windows of every raster together: (bands, S, S) for one, (dates, bands, S, S) for several."""
        return RasterWindows(self.datasets, stack=len(self.datasets) > 1)

    def date(self, index: int) -> Inputs:
        """One of the rasters alone, on the same grid."""
        i = index
        return replace(
            self, rasters=[self.rasters[i]], layouts=[self.layouts[i]], datasets=[self.datasets[i]]
        )


def layout_bands(layouts: Sequence[BandLayout]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Each date's sensor and band names, as `aligned_datasets` checks them."""
    return [lay.sensor for lay in layouts], [lay.band_names for lay in layouts]


def layouts_of(
    rasters: Sequence[Path], sensor: str | None, bands: Sequence[str] | None, band_groups: str
) -> list[BandLayout]:
    """The band layout of each raster, band groups as the model was trained (`model_band_groups`)."""
    return [band_layout(r, sensor, list(bands) if bands is not None else None, band_groups) for r in rasters]


@contextlib.contextmanager
def open_raster_input(raster: Path, layout: BandLayout) -> Iterator[Inputs]:
    """One raster on its own grid (no CRS: pixel units)."""
    with open_input(raster) as src:
        yield Inputs([raster], [layout], [src], src.crs, src.transform, src.crs is None)


@contextlib.contextmanager
def open_dates(rasters: Sequence[Path], layouts: Sequence[BandLayout]) -> Iterator[Inputs]:
    """Dates of one place on the first one's grid, checked as training's scenes are (`aligned_datasets`)."""
    with aligned_datasets(rasters, *layout_bands(layouts)) as (datasets, crs, transform, pixel_units):
        yield Inputs(list(rasters), list(layouts), datasets, crs, transform, pixel_units)


@contextlib.contextmanager
def reduced(inputs: Inputs, max_side: int | None, token_size: int) -> Iterator[Inputs]:
    """The inputs themselves when small enough (or `max_side` None), else in-memory overviews of at most
    `max_side` pixels a side in whole tokens (same place, coarser pixels)."""
    from rasterio.io import MemoryFile

    ref = inputs.datasets[0]
    if max_side is None or max(ref.width, ref.height) <= max_side:
        yield inputs
        return
    height, width = overview_size(ref.width, ref.height, max_side, token_size)
    transform = ref.transform @ Affine.scale(ref.width / width, ref.height / height)
    with contextlib.ExitStack() as stack:
        out = []
        for ds in inputs.datasets:
            pixels, valid = read_overview(ds, (height, width))
            pixels[:, ~valid] = np.nan
            memory = stack.enter_context(MemoryFile())
            profile = dict(driver="GTiff", width=width, height=height, count=pixels.shape[0], dtype="float32",
                           crs=ref.crs, transform=transform, nodata=float("nan"))  # fmt: skip
            with memory.open(**profile) as dst:
                dst.write(pixels)
            out.append(stack.enter_context(memory.open()))
        yield replace(inputs, datasets=out, transform=out[0].transform)
