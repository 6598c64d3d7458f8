"""Reading rasters window by window, as the model reads them: one raster or dates of one place on one grid.

`aligned_datasets` opens the dates (a file, band folder or STAC item each, `rsneo.io.read.open_input`), checks
them as training's scenes are checked (`rsneo.io.grid.check_series`) and warps later dates onto the first
one's grid; `RasterWindows` reads square windows of them with their valid pixels (GDAL's dataset mask, known
from the mask flags as `rsneo.io.dataset.band_validity` reads them for every reader); prediction's sliding
window and `rsneo learn` read through it. `read_overview` and `raster_statistics` read a whole raster reduced
(pictures, calibration, the statistics of 8-bit stretches).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.dataset import DATASET_MASK, MASK_BAND, band_validity, data_bands, dataset_grid
from rsneo.io.grid import check_series
from rsneo.io.read import PixelUnitsWarning, open_input


class RasterWindows:
    """Reads square windows (padded past the raster's edge) and their valid mask from aligned rasters.

    With several rasters (the dates of a change pair) a window is (dates, bands, size, size); pixels are valid
    when valid on every date. `datasets` may be rasterio datasets or WarpedVRTs already on one grid.
    Validity is GDAL's dataset mask, taken from the pixels already read where the mask is nodata values (a
    pixel is valid when any band holds data) and read once per window otherwise (an internal mask or alpha
    band): reading `dataset_mask` per window would decode every band a second time. A float pixel that is
    NaN or infinite in any band is invalid too (and read as 0), tagged nodata or not.
    """

    def __init__(self, datasets: list[rasterio.io.DatasetReaderBase], stack: bool = False) -> None:
        self.datasets = datasets
        self.stack = stack or len(datasets) > 1
        self.width, self.height = datasets[0].width, datasets[0].height
        self.bands = [data_bands(ds) for ds in datasets]
        self.masks = [_mask_source(ds, bands) for ds, bands in zip(datasets, self.bands, strict=True)]

    def read(self, row: int, col: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (bands, size, size) or (dates, bands, size, size) float32 and valid (size, size) bool."""
        h, w = min(size, self.height - row), min(size, self.width - col)
        window = Window(col, row, w, h)
        frames, valid = [], np.zeros((size, size), bool)
        valid[:h, :w] = True
        for ds, bands, mask in zip(self.datasets, self.bands, self.masks, strict=True):
            data = np.zeros((len(bands), size, size), np.float32)
            try:
                raw = ds.read(bands, window=window)  # (bands, h, w) in the file's dtype
                valid[:h, :w] &= _window_valid(ds, mask, raw, window)
            except RasterioError as exc:
                raise InputError(
                    f"{ds.name}: cannot read pixels at row {row}, column {col}; expected a complete raster, "
                    f"the file looks truncated or corrupt ({exc})"
                ) from None
            if np.issubdtype(raw.dtype, np.floating):  # NaN and inf are no data, whatever the tags say
                finite = np.isfinite(raw).all(0)
                if not finite.all():
                    valid[:h, :w] &= finite
                    raw = np.where(finite, raw, 0)
            data[:, :h, :w] = raw
            frames.append(data)
        pixels = np.stack(frames) if self.stack else frames[0]
        return pixels, valid


def _mask_source(dataset: rasterio.io.DatasetReaderBase, bands: list[int]) -> str | list[float | None]:
    """How validity is known for `bands`: "all" valid, `MASK_BAND`, `DATASET_MASK`, or nodata per band (None:
    valid everywhere), from the one reading of GDAL's mask flags (`band_validity`)."""
    validity = band_validity(dataset)
    kinds = [validity[b - 1] for b in bands]
    for kind in (MASK_BAND, DATASET_MASK):
        if kind in kinds:
            return kind
    if all(k is None for k in kinds):
        return "all"
    return kinds


def _window_valid(
    dataset: rasterio.io.DatasetReaderBase, mask: str | list[float | None], raw: np.ndarray, window: Window
) -> np.ndarray | bool:
    """(h, w) validity of one window, the same as `dataset.dataset_mask(window=window) > 0`."""
    if mask == "all":
        return True
    if mask == MASK_BAND:
        return dataset.read_masks(1, window=window) > 0
    if mask == DATASET_MASK:
        return dataset.dataset_mask(window=window) > 0
    valid = np.zeros(raw.shape[1:], bool)
    for values, nodata in zip(raw, mask, strict=True):
        if nodata is None:
            return True  # a band without nodata is valid everywhere, so is the union
        valid |= ~np.isnan(values) if np.isnan(nodata) else values != np.asarray(nodata).astype(values.dtype)
    return valid


@contextlib.contextmanager
def aligned_datasets(
    paths: Sequence[Path], sensors: Sequence[str], bands: Sequence[Sequence[str]]
) -> Iterator[tuple[list, CRS | None, Affine, bool]]:
    """Open dates of one place on the first one's grid; yields (datasets, crs or None, transform,
    pixel_units).

    `sensors` and `bands` name each date's sensor and bands. The dates pass the same checks as a training
    scene's (`rsneo.io.grid.check_series`); later dates on another grid are warped onto the first one's
    (WarpedVRT, read window by window, bilinear as `read_scene` resamples).
    """
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_input(p)) for p in paths]
        grids = [dataset_grid(s) for s in sources]
        check_series(paths, sensors, bands, grids)
        ref = sources[0]
        if grids[0].crs is None:
            warnings.warn(
                f"{paths[0]} and the other dates have no georeference: comparing pixel by pixel, "
                "areas are in pixels",
                PixelUnitsWarning,
                stacklevel=3,
            )
            yield sources, None, Affine.identity(), True
            return
        datasets = [ref]
        for src, grid in zip(sources[1:], grids[1:], strict=True):
            if (grid.crs, grid.transform, grid.width, grid.height) == (
                grids[0].crs,
                grids[0].transform,
                grids[0].width,
                grids[0].height,
            ):
                datasets.append(src)
            else:
                datasets.append(
                    stack.enter_context(
                        WarpedVRT(
                            src,
                            crs=ref.crs,
                            transform=ref.transform,
                            width=ref.width,
                            height=ref.height,
                            resampling=Resampling.bilinear,
                            add_alpha=_needs_alpha(src),
                        )
                    )
                )
        yield datasets, ref.crs, ref.transform, False


def _needs_alpha(src: rasterio.DatasetReader) -> bool:
    """Whether a reprojected view needs an alpha band to tell "outside the source" from real zeros."""
    return src.nodata is None and all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums)


def raster_statistics(path: Path, sample: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (bands,) of the valid pixels of a decimated read (<= `sample` px a side)."""
    with open_input(path) as src:
        scale = max(1, max(src.width, src.height) // sample)
        shape = (max(1, src.height // scale), max(1, src.width // scale))
        data = src.read(out_shape=(src.count, *shape)).astype(np.float64)  # (bands, h, w)
        valid = src.dataset_mask(out_shape=shape) > 0
    values = data[:, valid]  # (bands, n)
    if values.shape[1] == 0:
        return np.zeros(src.count), np.ones(src.count)
    values = np.where(np.isfinite(values), values, np.nan)
    mean = np.nanmean(values, axis=1)
    std = np.nanstd(values, axis=1)
    return mean, np.where(std > 1e-6, std, 1.0)


def overview_size(width: int, height: int, max_side: int, token_size: int) -> tuple[int, int]:
    """(height, width) of a reduced read: longest side about `max_side`, whole tokens of `token_size` pixels
    (the model's `RSNeoConfig.token_size`), aspect kept."""
    scale = min(1.0, max_side / max(width, height))

    def whole_tokens(n: int) -> int:
        return max(token_size, int(round(n * scale / token_size)) * token_size)

    return whole_tokens(height), whole_tokens(width)


def read_overview(dataset, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A whole open dataset (or WarpedVRT) resampled to `shape`: pixels (bands, h, w), valid (h, w)."""
    bands = data_bands(dataset)
    pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average).astype(
        np.float32
    )
    valid = (dataset.dataset_mask(out_shape=shape) > 0) & np.isfinite(pixels).all(0)
    return np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0), valid
