"""From a raster's bands to the model's band groups: wavelengths, STAC names, grouping and normalisation.

The sensor and the identity of each band come from the data reader (`rsneo.io.read.open_source`). Values in
the sensor's stored units are standardised with the sensor's statistics, exactly as training standardises them
(`rsneo.data.frames.normalise`); 8-bit stretches of a sensor stored in other units (as the Taizhou Landsat
pair) use statistics of the raster itself (a decimated read of its valid pixels), which also cancel most
radiometric differences between the dates of a change pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsneo.io.cog import open_raster
from rsneo.model.inputs import ImageInput


@dataclass(frozen=True)
class BandLayout:
    """How the bands of one raster (file order) become normalised band groups."""

    sensor: str
    band_names: tuple[str, ...]
    wavelengths: tuple[float, ...]  # micrometres, file order
    keys: tuple[str, ...]  # STAC common names / polarisations, file order
    groups: tuple[tuple[int, ...], ...]  # file-order band indices of each group
    mean: tuple[float, ...]
    std: tuple[float, ...]
    date: str | None = None  # acquisition date (YYYY-MM-DD) when the reader found one

    def rgb_bands(self) -> list[int]:
        """File-order indices of red, green, blue when present (for pictures), else the first band(s)."""
        keys = list(self.keys)
        if all(k in keys for k in ("red", "green", "blue")):
            return [keys.index(k) for k in ("red", "green", "blue")]
        return list(range(min(3, len(keys))))

    def images(self, pixels: np.ndarray, valid: np.ndarray, time: float | None = None) -> list[ImageInput]:
        """(bands, H, W) raw values, (H, W) valid mask -> one `ImageInput` per band group (invalid = 0)."""
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        x = np.where(valid[None], (pixels - mean) / std, 0.0).astype(np.float32)  # (bands, H, W)
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        out = []
        for group in self.groups:
            idx = list(group)
            out.append(
                ImageInput(
                    pixels=torch.from_numpy(x[idx]),
                    wavelengths=torch.tensor([self.wavelengths[i] for i in idx], dtype=torch.float32),
                    band_keys=tuple(self.keys[i] for i in idx),
                    time=time,
                )
            )
        return out


def raster_statistics(path: Path, sample: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (bands,) of the valid pixels of a decimated read (<= `sample` px a side)."""
    with open_raster(path) as src:
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


def model_band_groups(config: Any) -> str:
    """How the model groups bands, as it was trained (`rsneo train` records `data.band_groups` in the model
    config's `band_groups`, "sensor" for models without the record, such as the bundled one)."""
    from rsneo.data.frames import check_band_groups

    return check_band_groups(str(config.band_groups), "model config band_groups")


def band_layout(
    path: Path, sensor: str | None = None, bands: list[str] | None = None, band_groups: str = "sensor"
) -> BandLayout:
    """Identify the bands of a raster file and measure its statistics.

    The sensor comes from the metadata or `sensor`; `bands` names the file's bands in order when they are not
    the sensor's bands in its own order (both as `rsneo info` / the data reader take them). `band_groups`:
    the sensor's groups, or `fold` (all bands in one group), as the model was trained
    (`model_band_groups`).
    """
    import warnings

    from rsneo.io.read import PixelUnitsWarning, open_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # the commands warn about pixel units themselves
        source = open_source(path, sensor=sensor, bands=bands)
    bands = list(source.bands)
    index = {b.name: i for i, b in enumerate(bands)}
    groups = tuple(
        tuple(index[b.name] for b in members) for members in source.sensor.groups_for(bands).values()
    )
    if band_groups == "fold":
        groups = (tuple(i for group in groups for i in group),)
    with open_raster(path) as src:
        dtype = src.dtypes[0]
    if dtype == "uint8" and "uint8" not in source.sensor.units:
        mean, std = raster_statistics(path)  # an 8-bit stretch: the sensor's statistics would not fit
    else:  # the sensor's stored units: standardise as training does (rsneo.data.frames.normalise)
        mean, std = np.array([b.mean for b in bands]), np.array([b.std for b in bands])
    return BandLayout(
        sensor=source.sensor.name,
        band_names=tuple(b.name for b in bands),
        wavelengths=tuple(b.wavelength for b in bands),
        keys=tuple(b.common_name for b in bands),
        groups=groups,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        date=None if source.date is None else str(source.date.astype("datetime64[D]")),
    )


def overview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(height, width) of a reduced read: longest side <= `max_side`, multiples of 32, aspect kept."""
    scale = min(1.0, max_side / max(width, height))
    to32 = lambda n: max(32, int(round(n * scale / 32)) * 32)
    return to32(height), to32(width)


def read_overview(dataset, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A whole open dataset (or WarpedVRT) resampled to `shape`: pixels (bands, h, w), valid (h, w)."""
    from rasterio.enums import Resampling

    from rsneo.predict.sliding_window import data_bands

    bands = data_bands(dataset)
    pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average).astype(
        np.float32
    )
    valid = dataset.dataset_mask(out_shape=shape) > 0
    return pixels, valid
