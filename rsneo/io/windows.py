"""Square windows of aligned rasters and their valid pixels, as the model reads them.

Prediction's sliding window and `rsneo learn` read rasters through `RasterWindows`; validity is GDAL's
dataset mask, known from the mask flags as `rsneo.io.dataset.band_validity` reads them for every reader.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.dataset import DATASET_MASK, MASK_BAND, band_validity


def data_bands(dataset: rasterio.io.DatasetReaderBase) -> list[int]:
    """1-based indexes of a dataset's data bands: an alpha band (of a WarpedVRT, say) is a mask, not data."""
    return [i + 1 for i, interp in enumerate(dataset.colorinterp) if interp != ColorInterp.alpha]


class RasterWindows:
    """Reads square windows (padded past the raster's edge) and their valid mask from aligned rasters.

    With several rasters (the dates of a change pair) a window is (dates, bands, size, size); pixels are valid
    when valid on every date. `datasets` may be rasterio datasets or WarpedVRTs already on one grid.
    Validity is GDAL's dataset mask, taken from the pixels already read where the mask is nodata values (a
    pixel is valid when any band holds data) and read once per window otherwise (an internal mask or alpha
    band): reading `dataset_mask` per window would decode every band a second time.
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
