"""A raster's bands as the model reads them: wavelengths, STAC names, band groups and statistics.

The sensor and the identity of each band come from the data reader (`rsneo.io.read.open_source`). Windows
become `ImageInput`s through `rsneo.data.frames`, as training's scenes do (one normalisation, one grouping,
one padding): values in the sensor's stored units are standardised with the sensor's statistics; 8-bit
stretches of a sensor stored in other units (as the Taizhou Landsat pair) use statistics of the raster itself
(a decimated read of its valid pixels, `raster_statistics`), which also cancel most radiometric differences
between the dates of a change pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsneo.data.frames import (
    band_group_indices,
    check_band_groups,
    days,
    image_groups,
    standardise,
    statistics,
)
from rsneo.io.dataset import open_raster
from rsneo.model.inputs import DEFAULT_TOKEN_SIZE, ImageInput, ModelInputs


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

    def images(
        self, pixels: np.ndarray, valid: np.ndarray, token_size: int = DEFAULT_TOKEN_SIZE
    ) -> list[ImageInput]:
        """(bands, H, W) raw values, (H, W) valid mask -> one `ImageInput` per band group (invalid = 0),
        dated by the raster's acquisition date, as `rsneo.data.frames.frame_groups` makes them."""
        values = standardise(np.where(valid[None], pixels, np.nan), self.mean, self.std)
        return image_groups(values, self.wavelengths, self.keys, self.groups, days(self.date), token_size)


def window_inputs(
    layouts: Sequence[BandLayout], pixels: np.ndarray, valid: np.ndarray, config: Any, policy: str = "frame"
) -> ModelInputs:
    """Windows read by `RasterWindows` -> the model's inputs: one document per window, one frame per date.

    `pixels` (B, bands, S, S) for one raster (one layout) or (B, dates, bands, S, S) for aligned dates (a
    layout each); `valid` (B, S, S). `config` (an `RSNeoConfig`) gives the token size and image token ids;
    `policy="scene"` lets the dates of a window see each other.
    """
    from rsneo.heads.segmentation import image_documents

    if pixels.ndim == 4:
        pixels = pixels[:, None]
    token = config.token_size
    frames = [
        [layout.images(sample[t], v, token) for t, layout in enumerate(layouts)]
        for sample, v in zip(pixels, valid, strict=True)
    ]
    return image_documents(frames, config, policy=policy)


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
    config's `extra`); a model without the record (the bundled one) was trained with the sensor's groups."""
    return check_band_groups(str(config.extra.get("band_groups", "sensor")), "model config band_groups")


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
    groups = tuple(tuple(g) for g in band_group_indices(source.sensor, bands, band_groups))
    mean, std = statistics(source.sensor, bands, source.dtype, lambda: raster_statistics(path))
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


def overview_size(
    width: int, height: int, max_side: int, token_size: int = DEFAULT_TOKEN_SIZE
) -> tuple[int, int]:
    """(height, width) of a reduced read: longest side <= `max_side`, whole tokens, aspect kept."""
    scale = min(1.0, max_side / max(width, height))

    def whole_tokens(n: int) -> int:
        return max(token_size, int(round(n * scale / token_size)) * token_size)

    return whole_tokens(height), whole_tokens(width)


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
