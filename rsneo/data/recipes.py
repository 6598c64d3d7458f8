"""Recipes: archive layouts -> items -> tiled `Sample`s, for `rsneo.data.shards.prepare_shards`.

- `sen1floods11`: `S2/*_S2Hand.tif`, `S1/*_S1Hand.tif`, `Labels/*_LabelHand.tif` -> `image` (1, 13, t, t),
  `image_s1` (1, 2, t, t), `mask` (t, t) int16 (-1 = no data).
- `bigearthnet`: a folder of band GeoTIFFs per patch + `*_labels_metadata.json` -> `image` (1, 12, 120, 120),
  `labels` in the metadata.
- `timeseries`: folders (or the root) of GeoTIFFs of one place, one per date -> `image` (time, bands, t, t).
- `captions`: a JSON list `[{"image": path, "captions": [...]}]` -> `image` (1, 3, t, t), `captions`.

Items are small picklable tuples so shards can be made in worker processes. `check(item)` opens every raster's
header up front, so bad input fails before anything is written.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rsneo.data.archives import bigearthnet_patches, date_rasters, sen1floods11_chips
from rsneo.data.shards import Sample
from rsneo.errors import InputError
from rsneo.io.read import PixelUnitsWarning, open_source
from rsneo.io.scene import grid_of, read_mask, read_scene


def array_meta(scene: xr.DataArray, rows: slice, cols: slice) -> dict[str, Any]:
    """What a reader needs to rebuild a tile's scene: sensor, bands, dates, CRS, the tile's transform."""
    t = grid_of(scene).transform
    tile_transform = t @ t.translation(cols.start or 0, rows.start or 0)
    return {
        "sensor": scene.attrs["sensor"],
        "bands": [str(b) for b in scene["band"].values],
        "wavelengths": [float(w) for w in scene["wavelength"].values],
        "common_names": [str(c) for c in scene["common_name"].values],
        "dates": [None if np.isnat(d) else str(d.astype("datetime64[D]")) for d in scene["time"].values],
        "crs": scene.attrs["crs"],
        "transform": list(tile_transform)[:6],
    }


def tiles(height: int, width: int, tile: int) -> list[tuple[slice, slice]]:
    """Non-overlapping `tile` windows (rows, cols), row-major; a raster smaller than `tile` is one window."""
    th, tw = min(tile, height), min(tile, width)
    return [
        (slice(r, r + th), slice(c, c + tw))
        for r in range(0, height - th + 1, th)
        for c in range(0, width - tw + 1, tw)
    ]


def _stem_key(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _tiled(
    scene: xr.DataArray,
    tile: int,
    key: str,
    others: dict[str, xr.DataArray] | None = None,
    masks: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> list[Sample]:
    """Cut a scene (and other scenes and masks on its grid) into tiles; all-nodata tiles are skipped."""
    others, masks = others or {}, masks or {}
    out = []
    for rows, cols in tiles(scene.sizes["y"], scene.sizes["x"], tile):
        image = scene.values[:, :, rows, cols]  # (time, band, t, t)
        if np.isnan(image).all():
            continue
        arrays = {"image": np.ascontiguousarray(image)}
        described = {"image": array_meta(scene, rows, cols)}
        for name, other in others.items():
            arrays[name] = np.ascontiguousarray(other.values[:, :, rows, cols])
            described[name] = array_meta(other, rows, cols)
        for name, mask in masks.items():
            arrays[name] = np.ascontiguousarray(mask[rows, cols])
        out.append(
            Sample(f"{key}_r{rows.start}_c{cols.start}", arrays, {"arrays": described, **(meta or {})})
        )
    return out


# ---- sen1floods11 -------------------------------------------------------------------------------------


def sen1floods11_items(root: Path, tile: int, **_: Any) -> list[tuple]:
    return [
        (str(c.s2), str(c.s1) if c.s1.exists() else None, str(c.label) if c.label.exists() else None, tile)
        for c in sen1floods11_chips(root)
    ]


def sen1floods11_check(item: tuple) -> None:
    open_source(item[0], "sentinel2_l1c")
    if item[1]:
        open_source(item[1], "sentinel1_grd")


def sen1floods11_load(item: tuple) -> list[Sample]:
    s2_path, s1_path, label_path, tile = item
    s2 = read_scene(s2_path, sensor="sentinel2_l1c")
    others = {"image_s1": read_scene(s1_path, sensor="sentinel1_grd")} if s1_path else {}
    masks = {}
    if label_path:
        masks["mask"] = np.nan_to_num(read_mask(label_path, grid_of(s2)), nan=-1).astype(np.int16)
    meta = {"classes": ["not water", "water"], "mask_nodata": -1}
    return _tiled(s2, tile, _stem_key(Path(s2_path).stem), others, masks, meta)


# ---- bigearthnet --------------------------------------------------------------------------------------


def bigearthnet_items(root: Path, tile: int, **_: Any) -> list[tuple]:
    return [(str(p.folder), tuple(p.labels or ()), tile) for p in bigearthnet_patches(root)]


def bigearthnet_check(item: tuple) -> None:
    open_source(item[0])


def bigearthnet_load(item: tuple) -> list[Sample]:
    folder, labels, tile = Path(item[0]), item[1], item[2]
    return _tiled(read_scene(folder), tile, _stem_key(folder.name), meta={"labels": list(labels)})


# ---- timeseries ---------------------------------------------------------------------------------------


def timeseries_items(
    root: Path, tile: int, sensor: str | None = None, bands: list[str] | None = None
) -> list:
    folders = (
        [root] if date_rasters(root) else sorted(p for p in root.iterdir() if p.is_dir() and date_rasters(p))
    )
    if not folders:
        raise InputError(f"{root}: expected folders of GeoTIFFs (one per date), found none")
    return [
        (tuple(str(p) for p in date_rasters(f)), f.name, sensor, tuple(bands) if bands else None, tile)
        for f in folders
    ]


def timeseries_check(item: tuple) -> None:
    paths, _, sensor, bands, _ = item
    for path in paths:
        open_source(path, sensor, list(bands) if bands else None)


def timeseries_load(item: tuple) -> list[Sample]:
    paths, name, sensor, bands, tile = item
    scene = read_scene(list(paths), sensor=sensor, bands=list(bands) if bands else None)
    return _tiled(scene, tile, _stem_key(name))


# ---- captions -----------------------------------------------------------------------------------------


def captions_items(root: Path, tile: int, **_: Any) -> list[tuple]:
    path = root / "manifest.json" if root.is_dir() else root
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{path}: expected a captions JSON list of {{image, captions}}, could not read it ({exc})"
        ) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise InputError(f'{path}: expected a JSON list of {{"image": ..., "captions": [...]}} entries')
    return [(str(path.parent / e["image"]), tuple(e.get("captions", [])), tile) for e in entries]


def captions_check(item: tuple) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # captioned photos have no georeference
        open_source(item[0], "rgb")


def captions_load(item: tuple) -> list[Sample]:
    image, captions, tile = item
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        scene = read_scene(image, sensor="rgb")
    top, left = (max(0, scene.sizes[d] - tile) // 2 for d in ("y", "x"))
    transform = grid_of(scene).transform
    scene = scene.isel(y=slice(top, top + tile), x=slice(left, left + tile))
    scene.attrs["transform"] = tuple(transform @ transform.translation(left, top))[:6]
    return _tiled(scene, tile, _stem_key(Path(image).stem), meta={"captions": list(dict.fromkeys(captions))})[
        :1
    ]


@dataclass(frozen=True)
class Recipe:
    """An archive layout: how to list its items, check them, and load an item's samples."""

    name: str
    items: Callable[..., list]
    check: Callable[[tuple], None]
    load: Callable[[tuple], list[Sample]]
    items_per_shard: int
    description: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("sen1floods11", sen1floods11_items, sen1floods11_check, sen1floods11_load, 1,
               "Sentinel-2 L1C + Sentinel-1 chips with water masks"),
        Recipe("bigearthnet", bigearthnet_items, bigearthnet_check, bigearthnet_load, 4,
               "Sentinel-2 band folders with CORINE labels"),
        Recipe("timeseries", timeseries_items, timeseries_check, timeseries_load, 1,
               "folders of GeoTIFFs of one place, one per date"),
        Recipe("captions", captions_items, captions_check, captions_load, 8,
               "RGB images with captions from a JSON list"),
    )
}  # fmt: skip
