"""Labelled archives in: change pairs in the `A/ B/ label/ [list/]` layout and image/mask rasters with a class
table, read as `Sample`s whose class names are text.

- `change_pairs(root, split)`: LEVIR-CD, WHU-CD, DSIFN, S2Looking, CDD and any folder in their layout: the
  pair `A/<name>`, `B/<name>`, `label/<name>` (PNG or GeoTIFF, matched by file stem), the split from
  `list/train.txt|val.txt|test.txt` (one file name per line) or, without `list/`, from a `train_` / `val_` /
  `test_` name prefix (LEVIR-CD's crops; torchgeo's `LEVIRCD` splits the same way). Labels 0/255 or 0/1
  (`ClassTable.binary_change`), or a class table for semantic change.
- `mask_chips(images, masks, classes)`: segmentation, either two folders matched by file stem or one image
  with one mask matched by geography (the mask is reprojected onto the image's grid, nearest neighbour, and
  the chips cover where both have data), cut into chips of `chip` pixels.

Masks become class *indices* into `classes` (-1 = not scored), so two archives with different taxonomies feed
one label-as-text head. Every mistake a user can make with such a folder is an `InputError` naming the file:
A and B on different grids, a label value outside the table, a missing partner file, an empty split, a mask
that does not overlap its image. Nothing here writes a file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rsneo.data.frames import statistics
from rsneo.data.sample import SCENE, Sample, tiles, with_statistics
from rsneo.errors import InputError
from rsneo.io.dataset import dataset_grid, open_raster
from rsneo.io.grid import Grid
from rsneo.io.read import RASTER_SUFFIXES, PixelUnitsWarning, open_source, read_source, warn_pixel_units
from rsneo.io.scene import grid_of, read_mask, read_scene, to_scene
from rsneo.io.windows import raster_statistics

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassTable:
    """Mask value -> class name (text); `ignore` is the value that is not scored; `aliases` read one value as
    another (255 as 1 in 0/255 change labels)."""

    names: dict[int, str]
    ignore: int | None = None
    aliases: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ClassTable:
        """`"1=water,2=forest"`, optionally with `"ignore=255"` among the entries."""
        names: dict[int, str] = {}
        ignore = None
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            value, sep, name = (part.strip() for part in entry.partition("="))
            if not sep or not name or not value.lstrip("-").isdigit():
                if value == "ignore" and name.lstrip("-").isdigit():
                    ignore = int(name)
                    continue
                raise InputError(
                    "--classes: expected entries VALUE=NAME (e.g. 1=water,2=forest,ignore=255), "
                    f"got {entry!r}"
                )
            if int(value) in names:
                raise InputError(
                    f"--classes: mask value {value} is named twice ({names[int(value)]}, {name})"
                )
            names[int(value)] = name
        if not names:
            raise InputError(f"--classes: expected at least one VALUE=NAME entry, got {text!r}")
        if ignore is not None and ignore in names:
            raise InputError(f"--classes: value {ignore} is both ignored and named {names[ignore]!r}")
        return cls(names, ignore)

    @classmethod
    def binary_change(cls) -> ClassTable:
        """{0: "no change", 1: "change"}; 255 is read as 1 (labels stored 0/255)."""
        return cls({0: "no change", 1: "change"}, aliases={255: 1})

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names in order of their values, each name once: what `Sample.classes` holds."""
        return tuple(dict.fromkeys(self.names[v] for v in sorted(self.names)))

    def indices(self, values: np.ndarray, path: Path | str) -> np.ndarray:
        """Mask values (NaN = outside the raster) -> int64 indices into `classes`, -1 for `ignore` and NaN;
        a value the table does not hold is an `InputError` naming `path`."""
        missing = (
            np.isnan(values) if np.issubdtype(values.dtype, np.floating) else np.zeros(values.shape, bool)
        )
        raw = np.where(missing, 0, values).astype(np.int64)
        out = np.full(raw.shape, -1, dtype=np.int64)
        position = {name: i for i, name in enumerate(self.classes)}
        known = missing.copy()
        for value, name in self.names.items():
            hit = raw == value
            for alias, target in self.aliases.items():
                if target == value:
                    hit |= raw == alias
            out[hit & ~missing] = position[name]
            known |= hit
        if self.ignore is not None:
            known |= raw == self.ignore
        if not known.all():
            bad = np.unique(raw[~known])[:8].tolist()
            table = ", ".join(f"{v}={n}" for v, n in sorted(self.names.items()))
            extra = f", ignore={self.ignore}" if self.ignore is not None else ""
            raise InputError(f"{path}: holds mask values {bad} outside the class table ({table}{extra})")
        return out


# ---- change pairs: A/ B/ label/ [list/] ------------------------------------------------------------------


@dataclass(frozen=True)
class PairFiles:
    """The three files of one labelled change pair and the split it belongs to."""

    name: str
    a: Path
    b: Path
    label: Path
    split: str | None


def _rasters(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: expected this folder of the A/ B/ label/ change layout, found none")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES}


def _list_splits(root: Path) -> dict[str, str] | None:
    """Stem -> split from `list/<split>.txt`, or None without a `list/` folder."""
    lists = root / "list"
    if not lists.is_dir():
        return None
    out: dict[str, str] = {}
    for split in SPLITS:
        path = lists / f"{split}.txt"
        for line in path.read_text().splitlines() if path.is_file() else []:
            if line.strip():
                out[Path(line.strip()).stem] = split
    return out


def pair_files(root: str | Path, split: str | None = None) -> list[PairFiles]:
    """The pairs of a change folder (see the module docstring), only those of `split` when given."""
    root = Path(root)
    if split is not None and split not in SPLITS:
        raise InputError(f"split: expected one of {list(SPLITS)} or none, got {split!r}")
    a, b, labels = _rasters(root / "A"), _rasters(root / "B"), _rasters(root / "label")
    for stem in sorted(set(a) | set(b) | set(labels)):
        for folder, files in (("A", a), ("B", b), ("label", labels)):
            if stem not in files:
                have = next(f[stem] for f in (a, b, labels) if stem in f)
                raise InputError(f"{have}: has no partner in {root / folder} (expected {folder}/{have.name})")
    if not a:
        raise InputError(f"{root}: expected image pairs in A/ and B/ with labels in label/, found none")
    listed = _list_splits(root)
    pairs = []
    for stem in sorted(a):
        prefix = stem.split("_", 1)[0]
        which = listed.get(stem) if listed is not None else (prefix if prefix in SPLITS else None)
        if split is None or which == split:
            pairs.append(PairFiles(stem, a[stem], b[stem], labels[stem], which))
    if not pairs:
        where = f"{root / 'list' / f'{split}.txt'}" if listed is not None else f"{root}/A/{split}_*"
        if listed is not None and not (root / "list" / f"{split}.txt").is_file():
            found = sorted(p.stem for p in (root / "list").glob("*.txt"))
            raise InputError(f"{where}: split {split!r} not found; the lists of {root} are {found}")
        raise InputError(f"{where}: split {split!r} is empty; expected at least one pair of {root}")
    return pairs


def label_grid(path: Path) -> tuple[Grid, np.ndarray]:
    """A label or mask raster's grid and band 1 (labels are small: one band, read whole to check values)."""
    with open_raster(path) as src:
        return dataset_grid(src), src.read(1)


def _same_grid(first: Grid, other: Grid) -> bool:
    if first.width_height != other.width_height:
        return False
    return first.crs is None or (first.crs == other.crs and first.transform.almost_equals(other.transform))


def check_pair(
    files: PairFiles,
    sensor: str | None = None,
    bands: list[str] | None = None,
    classes: ClassTable | None = None,
) -> None:
    """Headers of A and B (one sensor, one grid) and the label's grid and values, before any image is read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        first, second = open_source(files.a, sensor, bands), open_source(files.b, sensor, bands)
    grid, values = label_grid(files.label)
    for path, other in ((files.b, second.grid), (files.label, grid)):
        if not _same_grid(first.grid, other):
            raise InputError(
                f"{path}: is {other.width}x{other.height} pixels on {other.crs or 'no CRS'}; expected "
                f"the grid of {files.a} ({first.grid.width}x{first.grid.height} on "
                f"{first.grid.crs or 'no CRS'}): a change pair and its label are compared pixel by pixel"
            )
    (classes or ClassTable.binary_change()).indices(values, files.label)


def read_pair(
    files: PairFiles,
    sensor: str | None = None,
    bands: list[str] | None = None,
    pixel_size: float | None = None,
    classes: ClassTable | None = None,
) -> Sample:
    """One change pair as a two-date `Sample` with its label as class indices. `pixel_size` (metres) gives an
    image without georeference its scale (areas in m²); georeferenced pairs keep their own."""
    check_pair(files, sensor, bands, classes)
    table = classes or ClassTable.binary_change()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        scene = read_scene([files.a, files.b], sensor=sensor, bands=bands)
        values = read_mask(files.label, grid_of(scene))
    if pixel_size is not None and not scene.attrs["crs"]:
        scene = scaled(scene, pixel_size)
    return with_statistics(
        Sample(files.name, scene, table.indices(values, files.label), table.classes, files.split)
    )


def scaled(scene, pixel_size: float):
    """A scene without georeference given square pixels of `pixel_size` (its corner stays at 0, 0)."""
    if pixel_size <= 0:
        raise InputError(f"pixel_size: expected a positive size in metres, got {pixel_size}")
    out = scene.copy()
    out.attrs["transform"] = tuple(Affine(pixel_size, 0, 0, 0, -pixel_size, 0))[:6]
    out = out.assign_coords(
        x=(np.arange(scene.sizes["x"]) + 0.5) * pixel_size,
        y=-(np.arange(scene.sizes["y"]) + 0.5) * pixel_size,
    )
    return out


def change_pairs(
    root: str | Path,
    split: str | None = None,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    pixel_size: float | None = None,
    classes: ClassTable | None = None,
) -> list[Sample]:
    """Every pair of a change folder (of `split` when given) as two-date samples; see the module docstring."""
    files = pair_files(root, split)
    for pair in files:  # every header and label first: a bad pair fails before any image is read whole
        check_pair(pair, sensor, bands, classes)
    pairs = [read_pair(pair, sensor, bands, pixel_size, classes) for pair in files]
    if pixel_size is None and any(not p.scene.attrs["crs"] for p in pairs):
        warn_pixel_units(Path(root) / "A")  # once for the folder, not per file: pixel_size= gives the scale
    return pairs


# ---- segmentation: images and masks ----------------------------------------------------------------------


def mask_pairs(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) files: two folders matched by file stem, or one image and one mask."""
    images, masks = Path(images), Path(masks)
    if images.is_dir() != masks.is_dir():
        raise InputError(f"{images}, {masks}: expected two folders (matched by name) or two raster files")
    if not images.is_dir():
        for path in (images, masks):
            if not path.is_file():
                raise InputError(f"{path}: expected a raster file, found none")
        return [(images, masks)]
    found, marks = _rasters(images), _rasters(masks)
    for stem in sorted(set(found) ^ set(marks)):
        have, folder = (found[stem], masks) if stem in found else (marks[stem], images)
        raise InputError(f"{have}: has no partner in {folder} (expected a raster named {stem}.*)")
    if not found:
        raise InputError(
            f"{images}: expected image rasters with masks of the same names in {masks}, found none"
        )
    return [(found[stem], marks[stem]) for stem in sorted(found)]


def check_mask_pair(
    image: Path, mask: Path, classes: ClassTable, sensor: str | None = None, bands: list[str] | None = None
) -> None:
    """Headers of an image and its mask (georeferenced alike, overlapping) and the mask's values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        source = open_source(image, sensor, bands)
    grid, values = label_grid(mask)
    if (source.grid.crs is None) != (grid.crs is None):
        raise InputError(f"{mask}: expected a CRS on both {image} and the mask, or on neither")
    if source.grid.crs is None and grid.width_height != source.grid.width_height:
        raise InputError(
            f"{mask}: has no georeference and is {grid.width}x{grid.height} pixels; expected "
            f"{source.grid.width}x{source.grid.height} like {image}"
        )
    if source.grid.crs is not None:
        bounds = transform_bounds(grid.crs, source.grid.crs, *grid.bounds, densify_pts=21)
        left, bottom, right, top = source.grid.bounds
        if not (bounds[0] < right and left < bounds[2] and bounds[1] < top and bottom < bounds[3]):
            raise InputError(
                f"{mask}: does not overlap {image} (mask on {grid.crs}, image on {source.grid.crs}); "
                "expected a mask of the same place"
            )
    classes.indices(values, mask)


def covered_window(image: Grid, mask: Grid) -> Window:
    """The window of `image` that `mask` covers (its bounds reprojected), clipped to the image."""
    if image.crs is None:
        return Window(0, 0, image.width, image.height)
    bounds = transform_bounds(mask.crs, image.crs, *mask.bounds, densify_pts=21)
    window = image.window_of_bounds(bounds)
    col0, row0 = max(0, int(window.col_off)), max(0, int(window.row_off))
    col1 = min(image.width, int(window.col_off + window.width))
    row1 = min(image.height, int(window.row_off + window.height))
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_mask_chips(
    image: Path,
    mask: Path,
    classes: ClassTable,
    sensor: str | None = None,
    bands: list[str] | None = None,
    chip: int | None = None,
    split: str | None = None,
) -> list[Sample]:
    """One image and its mask as samples: the part of the image the mask covers, in chips of `chip` pixels
    (None: one sample), each read window by window (a large image is never whole in memory) with the mask
    read onto the chip's grid (reprojected, nearest neighbour). The image standardises on its sensor's
    statistics or, for an 8-bit stretch, on its own (`raster_statistics`, as prediction does)."""
    check_mask_pair(image, mask, classes, sensor, bands)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        source = open_source(image, sensor, bands)
    mean, std = statistics(source.sensor, source.bands, source.dtype, lambda: raster_statistics(image))
    stats = {SCENE: (tuple(float(m) for m in mean), tuple(float(s) for s in std))}
    covered = covered_window(source.grid, label_grid(mask)[0])
    size = (int(covered.height), int(covered.width))
    windows = tiles(*size, chip) if chip else [(slice(0, size[0]), slice(0, size[1]))]
    out = []
    for rows, cols in windows:
        r, c = int(covered.row_off) + rows.start, int(covered.col_off) + cols.start
        grid = source.grid.window(Window(c, r, cols.stop - cols.start, rows.stop - rows.start))
        data = read_source(source, grid)  # (bands, y, x)
        values = read_mask(mask, grid)
        if np.isnan(data).all() or np.isnan(values).all():
            continue  # outside the image's data or the mask's extent
        scene = to_scene(data[None], source.sensor, list(source.bands), grid, [source.date], [source])
        name = image.stem if not chip else f"{image.stem}_r{r}_c{c}"
        indices = classes.indices(values, mask)
        out.append(Sample(name, scene, indices, classes.classes, split, statistics=stats, origin=(r, c)))
    if not out:
        raise InputError(f"{mask}: does not overlap the data of {image}; expected a mask of the same place")
    return out


def mask_chips(
    images: str | Path,
    masks: str | Path,
    classes: ClassTable,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    chip: int | None = None,
    split: str | None = None,
) -> list[Sample]:
    """Image/mask rasters as samples with `classes` as their class names; see the module docstring. `split`
    labels every sample (the caller knows which part of its archive these are)."""
    if chip is not None and chip <= 0:
        raise InputError(f"chip: expected a positive number of pixels, got {chip}")
    return [
        sample
        for image, mask in mask_pairs(images, masks)
        for sample in read_mask_chips(image, mask, classes, sensor, bands, chip, split)
    ]
