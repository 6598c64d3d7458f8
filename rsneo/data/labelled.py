"""Labelled samples: change pairs in the `A/ B/ label/ [list/]` layout, image/mask folders with a class table.

A minimal version of the data engineer's module (the interface evaluation codes against); the full readers
(TorchGeo adapters, masks matched by geography, every bad-input check) replace it at merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.dataset import open_raster
from rsneo.io.scene import read_scene

RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ClassTable:
    """Mask value -> class name (text), and the mask value that is not scored."""

    names: dict[int, str]
    ignore: int | None = None

    @classmethod
    def parse(cls, text: str) -> ClassTable:
        """ "1=water,2=forest" (optionally "ignore=255") -> a table; a malformed entry is an InputError."""
        names: dict[int, str] = {}
        ignore = None
        for entry in (e.strip() for e in text.split(",")):
            key, sep, value = (part.strip() for part in entry.partition("="))
            if not entry:
                continue
            try:
                if not sep or not value:
                    raise ValueError
                if key.lower() == "ignore":
                    ignore = int(value)
                else:
                    names[int(key)] = value
            except ValueError:
                raise InputError(
                    f"--classes: expected VALUE=NAME entries such as \"1=water,2=forest\" (and optionally "
                    f"ignore=VALUE), got {entry!r}"
                ) from None
        if not names:
            raise InputError(f"--classes: expected at least one VALUE=NAME entry, got {text!r}")
        return cls(names, ignore)

    @classmethod
    def binary_change(cls) -> ClassTable:
        """{0: "no change", 1: "change"}; a label value of 255 is read as 1."""
        return cls({0: "no change", 1: "change"})


@dataclass
class Sample:
    """One labelled sample: a scene (two dates for a change pair) and its mask of class indices."""

    name: str
    scene: xr.DataArray  # (time, band, y, x) as `rsneo.io.scene.read_scene` returns it
    mask: np.ndarray | None  # (y, x) int64 index into `classes`, -1 not scored
    classes: tuple[str, ...]
    split: str | None = None


def _mask_indices(path: Path, classes: ClassTable, window=None) -> np.ndarray:
    """A label raster's values -> indices into the table's names (-1 for the ignore value)."""
    with open_raster(path) as src:
        values = src.read(1, window=window).astype(np.int64)
    binary = classes == ClassTable.binary_change()
    if binary:
        values = np.where(values == 255, 1, values)
    out = np.full(values.shape, -1, np.int64)
    for index, value in enumerate(classes.names):
        out[values == value] = index
    unknown = (out == -1) & (values != (classes.ignore if classes.ignore is not None else -1))
    if unknown.any():
        found = sorted(set(np.unique(values[unknown]).tolist()))[:10]
        raise InputError(f"{path}: label values {found} are not in the class table {classes.names}")
    return out


def _rasters(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of rasters, found none")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES}


def _split_names(root: Path, split: str | None) -> set[str] | None:
    if split is None:
        return None
    listing = root / "list" / f"{split}.txt"
    if not listing.is_file():
        raise InputError(f"{listing}: split {split!r} not found (expected list/{split}.txt)")
    names = {Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()}
    if not names:
        raise InputError(f"{listing}: the split {split!r} lists no sample")
    return names


def change_pairs(
    root,
    split: str | None = None,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    pixel_size: float | None = None,
    classes: ClassTable | None = None,
) -> list[Sample]:
    """The pairs of a change folder (`A/`, `B/`, `label/`, optionally `list/SPLIT.txt`), in name order."""
    root = Path(root)
    classes = classes or ClassTable.binary_change()
    before, after, labels = (_rasters(root / part) for part in ("A", "B", "label"))
    wanted = _split_names(root, split)
    out = []
    for stem, a in before.items():
        if wanted is not None and stem not in wanted:
            continue
        for part, files in (("B", after), ("label", labels)):
            if stem not in files:
                raise InputError(f"{a}: no partner file {stem}.* in {root / part}")
        scene = read_scene([a, after[stem]], sensor, bands)
        mask = _mask_indices(labels[stem], classes)
        out.append(Sample(stem, scene, mask, tuple(classes.names.values()), split))
    if not out:
        raise InputError(f"{root}: no change pair found" + (f" in split {split!r}" if split else ""))
    return out


def mask_chips(
    images,
    masks,
    classes: ClassTable,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    chip: int | None = None,
    split: str | None = None,
) -> list[Sample]:
    """Images and masks matched by file name; each image whole, or cut into `chip`-pixel squares."""
    images, masks = Path(images), Path(masks)
    mask_files = _rasters(masks)
    out = []
    for stem, image in _rasters(images).items():
        if stem not in mask_files:
            raise InputError(f"{image}: no mask {stem}.* in {masks}")
        scene = read_scene(image, sensor, bands)
        height, width = scene.sizes["y"], scene.sizes["x"]
        size = chip or max(height, width)
        for row in range(0, height, size):
            for col in range(0, width, size):
                window = (col, row, min(size, width - col), min(size, height - row))
                part = scene if chip is None else read_scene(image, sensor, bands, window=window)
                mask = _mask_indices(mask_files[stem], classes, None if chip is None else Window(*window))
                name = stem if chip is None else f"{stem}_{row}_{col}"
                out.append(Sample(name, part, mask, tuple(classes.names.values()), split))
    if not out:
        raise InputError(f"{images}: no image found")
    return out
