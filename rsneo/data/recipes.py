"""One reader per archive: its items, a header check, whole `Sample`s, and how they are cut for training.

The same recipe feeds training in memory (`read_archive`) and `rsneo prepare`'s shards (`load_tiles` per
item, in worker processes), so both routes hold the same samples:

- `sen1floods11` (`S2/`, `S1/`, `Labels/` chips): Sentinel-2 L1C with a `sentinel1` partner and the water
  mask; cut into tiles, the left half `train` and the right half `val`, tiles mostly unlabelled left out.
- `bigearthnet` (band folders + labels JSON, S1 folders beside): Sentinel-2 L2A with a `sentinel1` partner
  and the scene labels; cut to the centre min(tile, 96) pixels.
- `timeseries` (folders of rasters of one place, one per date): every date on the first one's grid; tiles.
- `taizhou` (two Landsat-7 dates, `change.bmp`, `unchanged.bmp`): the pair with a sparse change mask; tiles
  holding a checked pixel.
- `captions` (a JSON list of images and captions): an RGB image with one caption; the centre max(tile, 64).
- `change` (`A/ B/ label/ [list/]`) and `segmentation` (image and mask rasters with a class table): the
  labelled samples of `rsneo.data.labelled`; tiles.

Items are small picklable values, so shards can be made in worker processes. `check(item)` reads headers
(and labels) only, so bad input fails before anything is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsneo.data.archives import (
    CaptionedImage,
    bigearthnet_patches,
    bigearthnet_roots,
    bigearthnet_s1_folder,
    captioned_images,
    date_rasters,
    sen1floods11_chips,
    taizhou_pair,
)
from rsneo.data.labelled import (
    ClassTable,
    PairFiles,
    check_mask_pair,
    check_pair,
    mask_pairs,
    pair_files,
    read_mask_chips,
    read_pair,
)
from rsneo.data.sample import Sample, centre_window, cut, cut_tiles, unlabelled_share, with_statistics
from rsneo.errors import InputError
from rsneo.io.read import PixelUnitsWarning, open_source
from rsneo.io.scene import grid_of, read_mask, read_scene

WATER = ClassTable({0: "land", 1: "water"}, ignore=-1)  # Sen1Floods11's label values (-1 = no data)
CHANGE = ClassTable.binary_change()  # labelled change: 0 no change, 1 change
BIGEARTHNET_CROP = 96  # the largest whole-token (32 px) square inside a 120 px BigEarthNet patch
CAPTION_MIN = 64  # captioned photos are cut to at least this many pixels: enough to say what they show


def _key(text: str) -> str:
    """A sample name safe in a shard (WebDataset keys: no dots)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


# ---- sen1floods11 -------------------------------------------------------------------------------------


def sen1floods11_items(root: Path, **_: Any) -> list:
    return sen1floods11_chips(root)


def sen1floods11_check(chip: Any) -> None:
    open_source(chip.s2, "sentinel2_l1c")
    if chip.s1.exists():
        open_source(chip.s1, "sentinel1_grd")


def sen1floods11_read(chip: Any) -> list[Sample]:
    """The chip: Sentinel-2 with Sentinel-1 as the `sentinel1` partner and the hand-labelled water mask."""
    s2 = read_scene(chip.s2, sensor="sentinel2_l1c")
    partners = {"sentinel1": read_scene(chip.s1, sensor="sentinel1_grd")} if chip.s1.exists() else {}
    mask = WATER.indices(read_mask(chip.label, grid_of(s2)), chip.label) if chip.label.exists() else None
    return [Sample(chip.stem, s2, mask, WATER.classes if mask is not None else (), partners=partners)]


def sen1floods11_cut(sample: Sample, tile: int) -> list[Sample]:
    """Tiles, the spatial split by halves (left `train`, right `val`, a tile across the middle neither);
    tiles whose label is mostly no data teach little and are left out."""
    half = sample.scene.sizes["x"] // 2
    out = []
    for part in cut_tiles(sample, tile):
        if part.mask is not None and unlabelled_share(part) > 0.5:
            continue
        left, right = part.origin[1], part.origin[1] + part.scene.sizes["x"]
        out.append(replace(part, split="train" if right <= half else "val" if left >= half else None))
    return out


# ---- bigearthnet --------------------------------------------------------------------------------------


def bigearthnet_items(root: Path, **_: Any) -> list:
    s2, s1 = bigearthnet_roots(root)
    return [(patch, s1 and bigearthnet_s1_folder(patch, s1)) for patch in bigearthnet_patches(s2)]


def bigearthnet_check(item: tuple) -> None:
    open_source(item[0].folder)


def bigearthnet_read(item: tuple) -> list[Sample]:
    patch, s1 = item
    partners = {"sentinel1": read_scene(s1, sensor="sentinel1_grd")} if s1 is not None else {}
    scene = read_scene(patch.folder)
    return [Sample(patch.folder.name, scene, partners=partners, labels=tuple(patch.labels or ()))]


def bigearthnet_cut(sample: Sample, tile: int) -> list[Sample]:
    size = min(tile, BIGEARTHNET_CROP)
    window = centre_window(sample.scene.sizes["y"], sample.scene.sizes["x"], size)
    return [cut(with_statistics(sample), window, sample.name)]


# ---- timeseries ---------------------------------------------------------------------------------------


def timeseries_items(root: Path, sensor: str | None = None, bands: list[str] | None = None, **_: Any) -> list:
    folders = (
        [root] if date_rasters(root) else sorted(p for p in root.iterdir() if p.is_dir() and date_rasters(p))
    )
    if not folders:
        raise InputError(f"{root}: expected folders of GeoTIFFs (one per date), found none")
    return [(tuple(date_rasters(f)), f.name, sensor, tuple(bands) if bands else None) for f in folders]


def timeseries_check(item: tuple) -> None:
    paths, _, sensor, bands = item
    for path in paths:
        open_source(path, sensor, list(bands) if bands else None)


def timeseries_read(item: tuple) -> list[Sample]:
    paths, name, sensor, bands = item
    return [Sample(_key(name), read_scene(list(paths), sensor=sensor, bands=list(bands) if bands else None))]


# ---- taizhou ------------------------------------------------------------------------------------------


def taizhou_items(root: Path, **_: Any) -> list:
    return [taizhou_pair(root)]


def taizhou_check(item: Any) -> None:
    for path in item.dates:
        open_source(path)


def taizhou_read(item: Any) -> list[Sample]:
    """The two dates with the reference as a change mask: 1 changed, 0 checked unchanged, -1 not checked."""
    scene = read_scene(list(item.dates))
    changed = np.asarray(Image.open(item.changed).convert("L")) > 0
    unchanged = np.asarray(Image.open(item.unchanged).convert("L")) > 0
    mask = np.where(changed, 1, np.where(unchanged, 0, -1)).astype(np.int64)
    return [Sample(item.changed.parent.name, scene, mask, CHANGE.classes)]


def taizhou_cut(sample: Sample, tile: int) -> list[Sample]:
    return [part for part in cut_tiles(sample, tile) if unlabelled_share(part) < 1.0]


# ---- captions -----------------------------------------------------------------------------------------


def captions_items(root: Path, **_: Any) -> list:
    return captioned_images(root)


def captions_check(item: CaptionedImage) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # captioned photos have no georeference
        open_source(item.image, "rgb")


def captions_read(item: CaptionedImage) -> list[Sample]:
    """One sample per distinct caption (one image, one sentence: one training document each)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        scene = read_scene(item.image, sensor="rgb")
    captions = [c.strip() for c in dict.fromkeys(item.captions)]
    return [Sample(f"{_key(item.image.stem)}_c{i}", scene, captions=(c,)) for i, c in enumerate(captions)]


def captions_cut(sample: Sample, tile: int) -> list[Sample]:
    window = centre_window(sample.scene.sizes["y"], sample.scene.sizes["x"], max(tile, CAPTION_MIN))
    return [cut(with_statistics(sample), window, sample.name)]


# ---- labelled change pairs and segmentation masks (rsneo.data.labelled) -------------------------------


def change_items(
    root: Path,
    split: str | None = None,
    sensor: str | None = None,
    bands: list[str] | None = None,
    pixel_size: float | None = None,
    classes: ClassTable | None = None,
    **_: Any,
) -> list:
    return [(pair, sensor, bands, pixel_size, classes) for pair in pair_files(root, split)]


def change_check(item: tuple[PairFiles, Any, Any, Any, Any]) -> None:
    pair, sensor, bands, _, classes = item
    check_pair(pair, sensor, bands, classes)


def change_read(item: tuple) -> list[Sample]:
    return [read_pair(*item)]


def segmentation_items(
    root: Path,
    masks: Path | None = None,
    classes: ClassTable | None = None,
    sensor: str | None = None,
    bands: list[str] | None = None,
    split: str | None = None,
    **_: Any,
) -> list:
    if masks is None or classes is None:
        raise InputError("segmentation: expected the mask rasters (--masks) and a class table (--classes)")
    return [(image, mask, classes, sensor, bands, split) for image, mask in mask_pairs(root, masks)]


def segmentation_check(item: tuple) -> None:
    image, mask, classes, sensor, bands, _ = item
    check_mask_pair(image, mask, classes, sensor, bands)


def segmentation_read(item: tuple) -> list[Sample]:
    image, mask, classes, sensor, bands, split = item
    return read_mask_chips(image, mask, classes, sensor, bands, None, split)


@dataclass(frozen=True)
class Recipe:
    """An archive layout: list its items, check them from headers, read an item's samples, cut them."""

    name: str
    items: Callable[..., list]
    check: Callable[[Any], None]
    read: Callable[[Any], list[Sample]]
    cut: Callable[[Sample, int], list[Sample]]
    items_per_shard: int
    description: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("sen1floods11", sen1floods11_items, sen1floods11_check, sen1floods11_read, sen1floods11_cut, 1,
               "Sentinel-2 L1C + Sentinel-1 chips with water masks"),
        Recipe("bigearthnet", bigearthnet_items, bigearthnet_check, bigearthnet_read, bigearthnet_cut, 4,
               "Sentinel-2 band folders (+ Sentinel-1) with CORINE labels"),
        Recipe("timeseries", timeseries_items, timeseries_check, timeseries_read, cut_tiles, 1,
               "folders of GeoTIFFs of one place, one per date"),
        Recipe("taizhou", taizhou_items, taizhou_check, taizhou_read, taizhou_cut, 1,
               "a Landsat pair with a sparse changed / unchanged reference"),
        Recipe("captions", captions_items, captions_check, captions_read, captions_cut, 8,
               "RGB images with captions from a JSON list"),
        Recipe("change", change_items, change_check, change_read, cut_tiles, 8,
               "labelled change pairs in the A/ B/ label/ [list/] layout (LEVIR-CD, WHU-CD, ...)"),
        Recipe("segmentation", segmentation_items, segmentation_check, segmentation_read, cut_tiles, 8,
               "image and mask rasters with a class table"),
    )
}  # fmt: skip


def load_tiles(recipe: str, tile: int, item: Any) -> list[Sample]:
    """An item's samples cut for `tile` (picklable with `functools.partial`: what shard workers run)."""
    chosen = RECIPES[recipe]
    return [part for sample in chosen.read(item) for part in chosen.cut(sample, tile)]


def tile_loader(recipe: str, tile: int) -> Callable[[Any], list[Sample]]:
    return partial(load_tiles, recipe, tile)


def read_archive(recipe: str, root: str | Path, tile: int, **options: Any) -> list[Sample]:
    """Every sample of an archive, in memory: the same samples `rsneo prepare` writes into shards."""
    chosen = RECIPES[recipe]
    items = chosen.items(Path(root), **options)
    for item in items:
        chosen.check(item)
    return [part for item in items for part in load_tiles(recipe, tile, item)]
