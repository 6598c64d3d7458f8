"""TorchGeo's labelled datasets as rsneo `Sample`s: thin adapters over torchgeo's own classes, read from a
local root (nothing is downloaded: `download=False`, and a missing root is an `InputError`).

- `levircd_pairs(root, split)`: `torchgeo.datasets.LEVIRCD` (A/ B/ label/ PNGs named by split; 0.5 m).
- `loveda_chips(root, split, scene)`: `torchgeo.datasets.LoveDA` (Train|Val/Urban|Rural/images_png|masks_png;
  0.3 m; mask 0 = no data, 1..7 its seven classes).

Each torchgeo sample (`image`, `mask` tensors) becomes a scene of the `rgb` sensor without georeference, at
the dataset's published pixel size, with the dataset's class table, so its classes reach a label-as-text head
as words. OSCD and LandCoverAI are not adapted yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from torchgeo.datasets import LEVIRCD, DatasetNotFoundError, LoveDA

from rsneo.data.labelled import ClassTable
from rsneo.data.sample import Sample, with_statistics
from rsneo.errors import InputError
from rsneo.io.grid import Grid
from rsneo.io.scene import to_scene
from rsneo.sensors import get_sensor

LOVEDA = ClassTable(
    {1: "background", 2: "building", 3: "road", 4: "water", 5: "barren", 6: "forest", 7: "agriculture"},
    ignore=0,
)
LEVIR_PIXEL_SIZE = 0.5  # metres (Chen and Shi 2020)
LOVEDA_PIXEL_SIZE = 0.3  # metres (Wang et al. 2021)


def _open(kind: type, root: str | Path, **options: Any) -> Any:
    try:
        return kind(root=str(root), download=False, **options)
    except DatasetNotFoundError:
        raise InputError(
            f"{root}: expected torchgeo's {kind.__name__} layout here (nothing is downloaded), found none"
        ) from None
    except AssertionError as exc:
        raise InputError(f"{kind.__name__}: {exc or 'an option is not one the dataset knows'}") from None


def _scene(image: np.ndarray, pixel_size: float) -> Any:
    """(dates, 3, y, x) RGB values as an `rgb` scene without georeference, pixels of `pixel_size`."""
    rgb = get_sensor("rgb")
    grid = Grid(None, Affine(pixel_size, 0, 0, 0, -pixel_size, 0), image.shape[-1], image.shape[-2])
    scene = to_scene(image.astype(np.float32), rgb, list(rgb.bands), grid, [None] * image.shape[0])
    scene.attrs["dtype"] = "uint8"  # torchgeo hands the PNG's bytes over as floats
    return scene


def _samples(dataset: Any, names: Sequence[str], table: ClassTable, pixel_size: float, split: str) -> list:
    out = []
    for index, name in enumerate(names):
        item = dataset[index]
        image = item["image"].numpy()
        scene = _scene(image if image.ndim == 4 else image[None], pixel_size)
        values = item["mask"].numpy()
        mask = table.indices(values.reshape(values.shape[-2:]), name)  # LEVIRCD: (1, y, x); LoveDA: (y, x)
        out.append(with_statistics(Sample(Path(name).stem, scene, mask, table.classes, split)))
    return out


def levircd_pairs(root: str | Path, split: str = "train") -> list[Sample]:
    """LEVIR-CD pairs of `split` through torchgeo's `LEVIRCD`, as two-date samples (0/1 change indices)."""
    dataset = _open(LEVIRCD, root, split=split)
    if len(dataset) == 0:
        raise InputError(f"{root}/A/{split}*.png: split {split!r} is empty; expected at least one pair")
    names = [files["image1"] for files in dataset.files]
    return _samples(dataset, names, ClassTable.binary_change(), LEVIR_PIXEL_SIZE, split)


def loveda_chips(
    root: str | Path, split: str = "train", scene: Sequence[str] = ("urban", "rural")
) -> list[Sample]:
    """LoveDA images of `split` (train or val: test has no masks) through torchgeo's `LoveDA`."""
    if split == "test":
        raise InputError("LoveDA: the test split has no masks; expected split train or val")
    dataset = _open(LoveDA, root, split=split, scene=list(scene))
    if len(dataset) == 0:
        raise InputError(f"{root}/{split.capitalize()}: split {split!r} is empty; expected images_png/*.png")
    return _samples(dataset, [files["mask"] for files in dataset.files], LOVEDA, LOVEDA_PIXEL_SIZE, split)
