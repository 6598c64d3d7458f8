"""TorchGeo's labelled datasets as rsneo `Sample`s: thin adapters over torchgeo's own classes, read from a
local root (nothing is downloaded: `download=False`, and a missing root is an `InputError`).

- `levircd_pairs(root, split)`: `torchgeo.datasets.LEVIRCD` (A/ B/ label/ PNGs named by split; 0.5 m).
- `oscd_pairs(root, split, bands)`: `torchgeo.datasets.OSCD` (Sentinel-2 L1C pairs, one TIFF per band,
  `dates.txt`, `cm/cm.png`; 10 m).
- `loveda_chips(root, split, scene)`: `torchgeo.datasets.LoveDA` (Train|Val/Urban|Rural/images_png|masks_png;
  0.3 m; mask 0 = no data, 1..7 its seven classes).
- `landcoverai_chips(root, split)`: `torchgeo.datasets.LandCoverAI` (`output/<id>.jpg`, `<id>_m.png`,
  `train|val|test.txt`; 0.25 m nominal (a few of its orthophotos are 0.5 m); five classes).

Each torchgeo sample (`image`, `mask` tensors) becomes a scene without georeference (the `rgb` sensor, or
Sentinel-2 L1C for OSCD) at the dataset's published pixel size, with the dataset's class table, so its
classes reach a label-as-text head as words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from torchgeo.datasets import LEVIRCD, OSCD, DatasetNotFoundError, LandCoverAI, LoveDA

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
LANDCOVERAI = ClassTable({0: "background", 1: "building", 2: "woodland", 3: "water", 4: "road"})
LEVIR_PIXEL_SIZE = 0.5  # metres (Chen and Shi 2020)
OSCD_PIXEL_SIZE = 10.0  # metres: every band resampled to the 10 m grid (Daudt et al. 2018)
LANDCOVERAI_PIXEL_SIZE = 0.25  # metres, nominal (Boguszewski et al. 2021)
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


def _scene(
    image: np.ndarray,
    pixel_size: float,
    sensor: str = "rgb",
    bands: Sequence[str] | None = None,
    dates: Sequence[str | None] = (),
) -> Any:
    """(dates, bands, y, x) values as a scene without georeference, pixels of `pixel_size`."""
    chosen = get_sensor(sensor)
    grid = Grid(None, Affine(pixel_size, 0, 0, 0, -pixel_size, 0), image.shape[-1], image.shape[-2])
    band_objs = [chosen.band(b) for b in bands] if bands else list(chosen.bands)
    days = [np.datetime64(d, "D") if d else None for d in dates] or [None] * image.shape[0]
    scene = to_scene(image.astype(np.float32), chosen, band_objs, grid, days)
    # torchgeo hands the stored values over as floats: the stored type decides the statistics (8-bit stretch)
    scene.attrs["dtype"] = "uint8" if sensor == "rgb" else "uint16"
    return scene


def _samples(dataset: Any, names: Sequence[str], table: ClassTable, pixel_size: float, split: str) -> list:
    """RGB samples of a torchgeo dataset: `image` (3 or dates x 3, y, x), `mask` (y, x) or (1, y, x)."""
    out = []
    for index, name in enumerate(names):
        item = dataset[index]
        image = item["image"].numpy()
        scene = _scene(image if image.ndim == 4 else image[None], pixel_size)
        values = item["mask"].numpy()
        mask = table.indices(values.reshape(values.shape[-2:]), name)
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


def _oscd_date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}"  # dates.txt: "date_1: 20151123"


def oscd_pairs(root: str | Path, split: str = "train", bands: Sequence[str] | None = None) -> list[Sample]:
    """OSCD pairs of `split` (train or test) through torchgeo's `OSCD`: Sentinel-2 L1C `bands` (default all
    13) of both dates, with their dates, and the change map as 0/1 indices."""
    options = {"bands": list(bands)} if bands else {}
    dataset = _open(OSCD, root, split=split, **options)
    if len(dataset) == 0:
        raise InputError(f"{root}: OSCD split {split!r} is empty; expected its Labels folder with regions")
    files = dataset.files
    samples = []
    for index, entry in enumerate(files):
        item = dataset[index]
        dates = [_oscd_date(d) for d in entry["dates"]]
        scene = _scene(item["image"].numpy(), OSCD_PIXEL_SIZE, "sentinel2_l1c", dataset.bands, dates)
        values = item["mask"].numpy()
        mask = ClassTable.binary_change().indices(values.reshape(values.shape[-2:]), entry["mask"])
        samples.append(
            with_statistics(Sample(str(entry["region"]), scene, mask, ("no change", "change"), split))
        )
    return samples


def landcoverai_chips(root: str | Path, split: str = "train") -> list[Sample]:
    """LandCover.ai tiles of `split` through torchgeo's `LandCoverAI`, with its five class names."""
    dataset = _open(LandCoverAI, root, split=split)
    if len(dataset) == 0:
        raise InputError(f"{root}/{split}.txt: split {split!r} is empty; expected tile ids, one a line")
    names = [f"{i.strip()}_m.png" for i in dataset.ids]
    return _samples(dataset, names, LANDCOVERAI, LANDCOVERAI_PIXEL_SIZE, split)
