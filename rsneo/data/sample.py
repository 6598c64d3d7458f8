"""The one `Sample` every archive reader gives, in memory or streamed from shards, and how samples are cut.

A sample is one example of an archive: a scene (one or more dates on one grid, exactly as
`rsneo.io.scene.read_scene` returns it), optional partner scenes on the same grid (Sentinel-1 beside
Sentinel-2), an optional per-pixel mask of class *indices* with its class names as text, scene labels,
captions and the split it belongs to. Readers (`rsneo.data.recipes`, `rsneo.data.labelled`) make samples;
shards (`rsneo.data.shards`) store and stream them unchanged; training composes documents from them.

Each scene's normalisation statistics travel with the sample (`statistics`): measured on the whole source
when the sensor has none for these values (an 8-bit stretch), so a tile cut from a raster, in memory or
from a shard, standardises exactly as the raster does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import xarray as xr

from rsneo.data.frames import scene_statistics
from rsneo.io.scene import grid_of

SCENE = "scene"  # the key of the main scene in `Sample.statistics` (partners use their own names)
Statistics = tuple[tuple[float, ...], tuple[float, ...]]  # per-band mean, std


@dataclass(frozen=True, eq=False)
class Sample:
    """One example of an archive (see the module docstring). `mask`: (y, x) int64 indices into `classes`,
    -1 = not scored; `origin`: (row, col) of the sample's top-left pixel in the raster it was cut from."""

    name: str
    scene: xr.DataArray  # (time, band, y, x)
    mask: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    split: str | None = None
    partners: dict[str, xr.DataArray] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    statistics: dict[str, Statistics] = field(default_factory=dict)
    origin: tuple[int, int] = (0, 0)

    def scenes(self) -> Iterator[tuple[str, xr.DataArray]]:
        """(key, scene) of the main scene, then of each partner."""
        yield SCENE, self.scene
        yield from self.partners.items()

    def stats(self, key: str = SCENE) -> Statistics:
        """The statistics to standardise scene `key` with (measured now if the reader recorded none)."""
        if key in self.statistics:
            return self.statistics[key]
        scene = self.scene if key == SCENE else self.partners[key]
        return resolved(scene)


def resolved(scene: xr.DataArray) -> Statistics:
    """A scene's statistics as plain floats (what `Sample.statistics` holds and shards store as JSON)."""
    mean, std = scene_statistics(scene)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def with_statistics(sample: Sample) -> Sample:
    """`sample` with every scene's statistics recorded: call before cutting, so tiles keep the whole's."""
    return replace(sample, statistics={key: sample.stats(key) for key, _ in sample.scenes()})


def tiles(height: int, width: int, tile: int) -> list[tuple[slice, slice]]:
    """Non-overlapping `tile` windows (rows, cols), row-major; a raster smaller than `tile` is one window."""
    th, tw = min(tile, height), min(tile, width)
    return [
        (slice(r, r + th), slice(c, c + tw))
        for r in range(0, height - th + 1, th)
        for c in range(0, width - tw + 1, tw)
    ]


def centre_window(height: int, width: int, size: int) -> tuple[slice, slice]:
    """The centred `size` window (rows, cols), clipped to the raster."""
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return slice(top, top + min(size, height)), slice(left, left + min(size, width))


def cut_scene(scene: xr.DataArray, rows: slice, cols: slice) -> xr.DataArray:
    """`scene[..., rows, cols]` with the window's own transform (coordinates follow with `isel`)."""
    t = grid_of(scene).transform
    part = scene.isel(y=rows, x=cols)
    part.attrs = {**scene.attrs, "transform": tuple(t @ t.translation(cols.start or 0, rows.start or 0))[:6]}
    return part


def cut(sample: Sample, window: tuple[slice, slice], name: str | None = None) -> Sample:
    """The part of `sample` in `window` (rows, cols): its scenes, partners and mask, named `name` (default:
    the sample's name with the window's corner). Partners smaller than the window are left out."""
    rows, cols = window
    r0, c0 = rows.start or 0, cols.start or 0
    partners = {
        key: cut_scene(other, rows, cols)
        for key, other in sample.partners.items()
        if other.sizes["y"] >= rows.stop and other.sizes["x"] >= cols.stop
    }
    return replace(
        sample,
        name=name or f"{sample.name}_r{r0}_c{c0}",
        scene=cut_scene(sample.scene, rows, cols),
        mask=None if sample.mask is None else np.ascontiguousarray(sample.mask[rows, cols]),
        partners=partners,
        statistics={k: v for k, v in sample.statistics.items() if k == SCENE or k in partners},
        origin=(sample.origin[0] + r0, sample.origin[1] + c0),
    )


def cut_tiles(sample: Sample, tile: int) -> list[Sample]:
    """`sample` cut into `tiles` (statistics recorded first); tiles without one valid pixel are left out."""
    whole = with_statistics(sample)
    out = []
    for window in tiles(sample.scene.sizes["y"], sample.scene.sizes["x"], tile):
        part = cut(whole, window)
        if not np.isnan(part.scene.values).all():
            out.append(part)
    return out


def unlabelled_share(sample: Sample) -> float:
    """The share of the mask's pixels that are not scored (-1); 1.0 without a mask."""
    return 1.0 if sample.mask is None or sample.mask.size == 0 else float((sample.mask < 0).mean())
