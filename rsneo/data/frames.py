"""From a scene to model frames: per-sensor normalisation, band groups, `ImageInput`s per date.

A frame is one acquisition: the band groups of one date, each an `ImageInput` (bands, height, width) with the
groups' wavelengths and STAC common names, all sitting in one `<img>` block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from rsneo.errors import InputError
from rsneo.model.inputs import ImageInput
from rsneo.sensors import Band, get_sensor

if TYPE_CHECKING:  # annotations only; importing xarray (and pandas) is 0.4 s CPU the commands need not pay
    import xarray as xr

EPOCH = np.datetime64("1970-01-01", "D")
PATCH = 32  # pixels per token side
# How a frame's bands become groups: `sensor` = the sensor's default groups (one token per 32x32 pixels and
# group: a 13-band Sentinel-2 frame costs 5x the tokens of an RGB one), `fold` = all bands in one group
# (one token per 32x32 pixels whatever the bands; the patch embedding conditions each band's kernel on its
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


def normalise(scene: xr.DataArray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(time, band, y, x) float32 standardised per band, nodata (NaN) -> 0, the band mean.

    Statistics: `stats` (mean, std per band) when given (e.g. a prepared archive's), else the sensor's,
    which are in its stored units. An 8-bit raster of a sensor whose statistics are in other units
    (Landsat composites scaled to 0..255) uses its own per-band statistics, as the sensor's would be
    meaningless.
    """
    values = scene.values.astype(np.float32)
    if stats is None:
        sensor = get_sensor(scene.attrs["sensor"])
        if scene.attrs.get("dtype") == "uint8" and "uint8" not in sensor.units:
            stats = band_statistics(scene)
        else:
            bands = [sensor.band(str(b)) for b in scene["band"].values]
            stats = (np.array([b.mean for b in bands]), np.array([b.std for b in bands]))
    mean = np.asarray(stats[0], np.float32)[None, :, None, None]
    std = np.asarray(stats[1], np.float32)[None, :, None, None]
    if mean.shape[1] != values.shape[1]:
        raise InputError(f"normalise: {values.shape[1]} bands but statistics for {mean.shape[1]}")
    return np.nan_to_num((values - mean) / std, nan=0.0)


def pad_to_patches(pixels: np.ndarray) -> np.ndarray:
    """Zero-pad (..., y, x) at the bottom and right to multiples of 32 (0 = the mean after normalising)."""
    h, w = pixels.shape[-2:]
    ph, pw = -h % PATCH, -w % PATCH
    if ph == 0 and pw == 0:
        return pixels
    pad = [(0, 0)] * (pixels.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(pixels, pad)


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
        )
        if len(members) > 1
        else members[0]
        for members in by_grid.values()
    ]


def _days(date: np.datetime64) -> float | None:
    return None if np.isnat(date) else float((date.astype("datetime64[D]") - EPOCH).astype(np.int64))


def frame_groups(
    scene: xr.DataArray,
    values: np.ndarray,
    t: int,
    window: tuple[slice, slice] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> list[ImageInput]:
    """Band groups of date `t` (normalised `values` from `normalise`) cut to `window` (rows, cols).

    Groups are the sensor's default grouping of the scene's bands unless `groups` (name -> band names) is
    given. Sizes that are not multiples of 32 are padded.
    """
    sensor = get_sensor(scene.attrs["sensor"])
    bands = [sensor.band(str(b)) for b in scene["band"].values]
    index = {b.name: i for i, b in enumerate(bands)}
    chosen: dict[str, list[Band]]
    if groups is None:
        chosen = sensor.groups_for(bands)
    else:
        chosen = {name: [sensor.band(n) for n in members] for name, members in groups.items()}
        missing = [b.name for members in chosen.values() for b in members if b.name not in index]
        if missing:
            raise InputError(f"band groups name bands {missing} that the scene does not hold ({list(index)})")
    rows, cols = window or (slice(None), slice(None))
    time = _days(scene["time"].values[t])
    out = []
    for members in chosen.values():
        pixels = pad_to_patches(values[t, [index[b.name] for b in members]][:, rows, cols])  # (bands, y, x)
        out.append(
            ImageInput(
                torch.from_numpy(np.ascontiguousarray(pixels)),
                torch.tensor([b.wavelength for b in members], dtype=torch.float32),
                tuple(b.common_name for b in members),
                time,
            )
        )
    return out


def scene_frames(
    scene: xr.DataArray,
    window: tuple[slice, slice] | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    groups: dict[str, list[str]] | None = None,
    captions: bool = False,
) -> list[Frame]:
    """One `Frame` per date of a scene, normalised; `captions` puts "<date> <sensor>:" before each frame."""
    values = normalise(scene, stats)
    frames = []
    for t, date in enumerate(scene["time"].values):
        caption = None
        if captions:
            day = "unknown date" if np.isnat(date) else str(date.astype("datetime64[D]"))
            caption = f"{day} {scene.attrs['sensor']}:"
        frames.append(Frame(frame_groups(scene, values, t, window, groups), caption, {"t": t}))
    return frames
