"""From raster values to model frames: per-sensor normalisation, band groups, `ImageInput`s per date.

A frame is one acquisition: the band groups of one date, each an `ImageInput` (bands, height, width) with the
groups' wavelengths and STAC common names, all sitting in one `<img>` block. Training (scenes) and prediction
(`BandLayout`, windows of a raster) both go through the functions here: `statistics` picks
the normalisation statistics, `standardise` applies them, `band_group_indices` groups the bands and
`image_groups` pads and wraps them, so a window gives the same `ImageInput`s whichever path read it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rsneo.errors import InputError
from rsneo.io.read import PixelUnitsWarning, open_source
from rsneo.io.windows import raster_statistics
from rsneo.model.inputs import DEFAULT_TOKEN_SIZE, ImageInput
from rsneo.sensors import Band, Sensor, get_sensor

if TYPE_CHECKING:  # annotations only; importing xarray (and pandas) is 0.4 s CPU the commands need not pay
    import xarray as xr

EPOCH = np.datetime64("1970-01-01", "D")
# How a frame's bands become groups: `sensor` = the sensor's default groups (one token per token square and
# group: a 13-band Sentinel-2 frame costs 5x the tokens of an RGB one), `fold` = all bands in one group
# (one token per token square whatever the bands; the patch embedding conditions each band's kernel on its
# wavelength, so any band set makes one group).
BAND_GROUPS = ("sensor", "fold")
# Training's default (`data.band_groups`): as accurate on the learning benchmark, 5x fewer image tokens for
# Sentinel-2 (docs/training.md). Prediction follows what each model was trained with.
DEFAULT_BAND_GROUPS = "fold"


@dataclass
class Frame:
    """One acquisition's band groups in token order, with optional text to put before its `<img>` block."""

    groups: list[ImageInput]
    caption: str | None = None  # e.g. "2017-06-13 sentinel2_l2a:"; no loss is put on it
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(g.num_tokens for g in self.groups)


def band_statistics(scene: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the valid pixels of all dates: (bands,), (bands,)."""
    values = scene.values  # (time, band, y, x)
    mean = np.nanmean(values, axis=(0, 2, 3))
    std = np.nanstd(values, axis=(0, 2, 3))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def own_statistics(sensor: Sensor, dtype: str) -> bool:
    """Whether values of `dtype` standardise with their raster's own statistics: an 8-bit stretch of a sensor
    whose statistics are in other units (Landsat composites scaled to 0..255), where the sensor's would be
    meaningless."""
    return dtype == "uint8" and "uint8" not in sensor.units


def statistics(
    sensor: Sensor,
    bands: Sequence[Band],
    dtype: str,
    measure: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, std) to standardise with: the sensor's, in its stored units, or `measure()` (the
    raster's own statistics) where `own_statistics` says so."""
    if own_statistics(sensor, dtype):
        return measure()
    return np.array([b.mean for b in bands]), np.array([b.std for b in bands])


def standardise(values: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(..., band, y, x) values -> float32 standardised per band; NaN (nodata) and infinities -> 0 (the
    mean), so no invalid value reaches the model."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if mean.shape[0] != values.shape[-3]:
        raise InputError(f"normalise: {values.shape[-3]} bands but statistics for {mean.shape[0]}")
    x = (values.astype(np.float32, copy=False) - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def normalise(scene: xr.DataArray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(time, band, y, x) float32 standardised per band, nodata (NaN) -> 0, the band mean.

    Statistics: `stats` (mean, std per band) when given (e.g. a prepared archive's), else `statistics`: the
    sensor's, or for an 8-bit stretch the scene's own (`band_statistics`).
    """
    return standardise(scene.values, *(scene_statistics(scene) if stats is None else stats))


def scene_statistics(scene: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, std) a scene standardises with: its sensor's, or for an 8-bit stretch its own
    (`statistics`, read from the scene's stored `dtype`)."""
    sensor = get_sensor(scene.attrs["sensor"])
    bands = [sensor.band(str(b)) for b in scene["band"].values]
    return statistics(sensor, bands, str(scene.attrs.get("dtype")), lambda: band_statistics(scene))


def pad_to_tokens(pixels: np.ndarray, token_size: int = DEFAULT_TOKEN_SIZE) -> np.ndarray:
    """Zero-pad (..., y, x) at the bottom and right to multiples of `token_size` (0 = the mean after
    normalising)."""
    h, w = pixels.shape[-2:]
    ph, pw = -h % token_size, -w % token_size
    if ph == 0 and pw == 0:
        return pixels
    pad = [(0, 0)] * (pixels.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(pixels, pad)


def band_group_indices(sensor: Sensor, bands: Sequence[Band], mode: str = "sensor") -> list[list[int]]:
    """Indexes into `bands` of each band group: the sensor's groups, or with `fold` all of them in one group,
    in the sensor groups' order (what `fold_groups` makes of a frame built with the sensor's groups)."""
    index = {b.name: i for i, b in enumerate(bands)}
    groups = [[index[b.name] for b in members] for members in sensor.groups_for(list(bands)).values()]
    return [[i for group in groups for i in group]] if check_band_groups(mode) == "fold" else groups


def image_groups(
    values: np.ndarray,
    wavelengths: Sequence[float],
    keys: Sequence[str],
    groups: Sequence[Sequence[int]],
    time: float | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[ImageInput]:
    """Standardised (bands, y, x) values of one date, with each band's wavelength (um) and STAC name -> one
    `ImageInput` per group of band indexes, padded to whole tokens."""
    out = []
    for members in groups:
        pixels = pad_to_tokens(values[list(members)], token_size)  # (group bands, y, x)
        out.append(
            ImageInput(
                torch.from_numpy(np.ascontiguousarray(pixels)),
                torch.tensor([wavelengths[i] for i in members], dtype=torch.float32),
                tuple(keys[i] for i in members),
                time,
                token_size,
            )
        )
    return out


def check_band_groups(mode: str, where: str = "data.band_groups") -> str:
    if mode not in BAND_GROUPS:
        raise InputError(f"{where}: expected one of {list(BAND_GROUPS)}, got {mode!r}")
    return mode


def fold_groups(groups: Sequence[ImageInput]) -> list[ImageInput]:
    """The band groups of one frame as one group, bands concatenated in order (groups of another size or
    date, which cannot share tokens, stay apart)."""
    by_grid: dict[tuple, list[ImageInput]] = {}
    for group in groups:
        by_grid.setdefault((tuple(group.pixels.shape[-2:]), group.time), []).append(group)
    return [
        ImageInput(
            torch.cat([g.pixels for g in members]),
            torch.cat([g.wavelengths for g in members]),
            tuple(k for g in members for k in g.band_keys),
            members[0].time,
            members[0].token_size,
        )
        if len(members) > 1
        else members[0]
        for members in by_grid.values()
    ]


def days(date: np.datetime64 | str | None) -> float | None:
    """An acquisition date as `ImageInput.time`: days since 1970-01-01 (None when unknown)."""
    if date is None:
        return None
    date = np.datetime64(date)
    return None if np.isnat(date) else float((date.astype("datetime64[D]") - EPOCH).astype(np.int64))


def frame_groups(
    scene: xr.DataArray,
    values: np.ndarray,
    t: int,
    window: tuple[slice, slice] | None = None,
    groups: dict[str, list[str]] | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[ImageInput]:
    """Band groups of date `t` (normalised `values` from `normalise`) cut to `window` (rows, cols).

    Groups are the sensor's default grouping of the scene's bands unless `groups` (name -> band names) is
    given. Sizes that are not multiples of `token_size` are padded.
    """
    sensor = get_sensor(scene.attrs["sensor"])
    bands = [sensor.band(str(b)) for b in scene["band"].values]
    if groups is None:
        chosen = band_group_indices(sensor, bands)
    else:
        index = {b.name: i for i, b in enumerate(bands)}
        named = [[sensor.band(n).name for n in members] for members in groups.values()]
        missing = [n for members in named for n in members if n not in index]
        if missing:
            raise InputError(f"band groups name bands {missing} that the scene does not hold ({list(index)})")
        chosen = [[index[n] for n in members] for members in named]
    rows, cols = window or (slice(None), slice(None))
    time = days(scene["time"].values[t])
    wavelengths, keys = [b.wavelength for b in bands], [b.common_name for b in bands]
    return image_groups(values[t][:, rows, cols], wavelengths, keys, chosen, time, token_size)


def scene_frames(
    scene: xr.DataArray,
    window: tuple[slice, slice] | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    groups: dict[str, list[str]] | None = None,
    captions: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Frame]:
    """One `Frame` per date of a scene, normalised; `captions` puts "<date> <sensor>:" before each frame."""
    values = normalise(scene, stats)
    frames = []
    for t, date in enumerate(scene["time"].values):
        caption = None
        if captions:
            day = "unknown date" if np.isnat(date) else str(date.astype("datetime64[D]"))
            caption = f"{day} {scene.attrs['sensor']}:"
        frames.append(Frame(frame_groups(scene, values, t, window, groups, token_size), caption, {"t": t}))
    return frames


# ---- a raster's bands, for prediction's windows ----------------------------------------------------------


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
        dated by the raster's acquisition date, as `frame_groups` makes them for training."""
        values = standardise(np.where(valid[None], pixels, np.nan), self.mean, self.std)
        return image_groups(values, self.wavelengths, self.keys, self.groups, days(self.date), token_size)


def model_band_groups(config: Any) -> str:
    """How the model groups bands, as it was trained (`rsneo train` records `data.band_groups` in the model
    config's `band_groups`, "sensor" for models without the record, written before it was kept)."""
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
