"""Labelled samples for fine-tuning: change pairs in the `A/ B/ label/ [list/]` layout and image/mask rasters.

A minimal version of the interface the data engineer owns (issue 20, item 1): `ClassTable`, `Sample`,
`change_pairs` and `mask_chips`. Rasters go through `rsneo.io.scene.read_scene` (the one reader); masks are
read onto the image's grid (nearest) and turned into class indices, -1 where the mask says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsneo.errors import InputError
from rsneo.io.read import RASTER_SUFFIXES
from rsneo.io.scene import grid_of, read_mask, read_scene

if TYPE_CHECKING:
    import xarray as xr

IGNORE = -1
CHANGE_FOLDERS = ("A", "B", "label")


@dataclass(frozen=True)
class ClassTable:
    """Mask value -> class name, and the value that marks unlabelled pixels."""

    names: dict[int, str]
    ignore: int | None = None

    @classmethod
    def parse(cls, text: str, ignore: int | None = None) -> ClassTable:
        """ "1=water,2=forest" -> {1: "water", 2: "forest"}."""
        names: dict[int, str] = {}
        for item in (part.strip() for part in text.split(",")):
            value, sep, name = item.partition("=")
            if not sep or not value.strip().lstrip("-").isdigit() or not name.strip():
                raise InputError(
                    f'--classes: expected VALUE=NAME items such as "1=water,2=forest", got {item!r}'
                )
            names[int(value)] = name.strip()
        if len(names) < 2:
            raise InputError(f"--classes: expected at least two classes, got {text!r}")
        return cls(names, ignore)

    @classmethod
    def binary_change(cls) -> ClassTable:
        """LEVIR-CD style labels: 0 unchanged, 1 (or 255) changed."""
        return cls({0: "no change", 1: "change"})

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.names[v] for v in sorted(self.names))

    def indices(self, values: np.ndarray, path: Path) -> np.ndarray:
        """Mask values (NaN: no data) -> (y, x) int64 class indices, -1 for ignored or missing values."""
        known = np.nan_to_num(values, nan=IGNORE if self.ignore is None else self.ignore).astype(np.int64)
        if self.names.keys() == {0, 1} and known.max(initial=0) == 255:
            known = np.where(known == 255, 1, known)  # 0/255 masks (LEVIR-CD's PNGs)
        out = np.full(known.shape, IGNORE, np.int64)
        for index, value in enumerate(sorted(self.names)):
            out[known == value] = index
        stray = set(np.unique(known[out == IGNORE]).tolist()) - {IGNORE, self.ignore}
        if stray:
            raise InputError(
                f"{path}: mask values {sorted(stray)[:5]} are not in the class table {self.names} "
                f"(ignore value {self.ignore})"
            )
        return out


@dataclass
class Sample:
    """One labelled scene: its dates (time, band, y, x) and the class index of every pixel."""

    name: str
    scene: xr.DataArray
    mask: np.ndarray  # (y, x) int64 class indices, -1 ignored
    classes: tuple[str, ...]
    split: str | None = None


def _rasters(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of rasters, found none")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES}


def _split_of(root: Path) -> dict[str, str]:
    """Pair name -> split, from `list/{train,val,test}.txt` where they exist."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = root / "list" / f"{split}.txt"
        if path.is_file():
            for line in path.read_text().split():
                out[Path(line).stem] = split
    return out


def change_pairs(
    root: Path,
    split: str | None = None,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    pixel_size: float | None = None,
    classes: ClassTable | None = None,
) -> list[Sample]:
    """The labelled pairs of a change folder (`A/`, `B/`, `label/`), those of `split` only when given."""
    root = Path(root)
    found = {name: _rasters(root / name) for name in CHANGE_FOLDERS}
    table = classes or ClassTable.binary_change()
    splits = _split_of(root)
    samples = []
    for stem, before in found["A"].items():
        if split is not None and splits.get(stem) != split:
            continue
        for name in ("B", "label"):
            if stem not in found[name]:
                raise InputError(f"{before}: no partner {stem}.* in {root / name}")
        scene = read_scene([before, found["B"][stem]], sensor=sensor, bands=bands)
        values = read_mask(found["label"][stem], grid_of(scene))
        mask = table.indices(values, found["label"][stem])
        samples.append(Sample(stem, scene, mask, table.classes, splits.get(stem)))
    if not samples:
        raise InputError(f"{root}: no labelled pairs{f' in split {split}' if split else ''}")
    return samples


def _match(images: list[Path], masks: list[Path]) -> list[tuple[Path, Path]]:
    """Images and masks paired by name, or by name without its last `_part` (Sen1Floods11's suffixes)."""
    if len(images) == len(masks) == 1:
        return [(images[0], masks[0])]
    by_key = {m.stem.rsplit("_", 1)[0]: m for m in masks} | {m.stem: m for m in masks}
    pairs = []
    for image in images:
        mask = by_key.get(image.stem) or by_key.get(image.stem.rsplit("_", 1)[0])
        if mask is None:
            raise InputError(f"{image}: no mask of the same name among {len(masks)} masks")
        pairs.append((image, mask))
    return pairs


def mask_chips(
    images: Path,
    masks: Path,
    classes: ClassTable,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    chip: int | None = None,
    split: str | None = None,
) -> list[Sample]:
    """Image rasters with their masks (files, or folders matched by name), cut into `chip`-pixel squares."""
    images, masks = Path(images), Path(masks)
    image_files = list(_rasters(images).values()) if images.is_dir() else [images]
    mask_files = list(_rasters(masks).values()) if masks.is_dir() else [masks]
    samples = []
    for image, mask_path in _match(image_files, mask_files):
        scene = read_scene([image], sensor=sensor, bands=bands)
        mask = classes.indices(read_mask(mask_path, grid_of(scene)), mask_path)
        size = chip or max(mask.shape)
        for row in range(0, mask.shape[0], size):
            for col in range(0, mask.shape[1], size):
                window = slice(row, row + size), slice(col, col + size)
                piece = scene.isel(y=window[0], x=window[1])
                name = image.stem if chip is None else f"{image.stem}_{row}_{col}"
                samples.append(Sample(name, piece, mask[window], classes.classes, split))
    return samples
