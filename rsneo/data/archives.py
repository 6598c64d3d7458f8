"""Archive layouts, parsed in one place: which files make up each sample of a known archive (Sen1Floods11
chips, BigEarthNet patches and their Sentinel-1 partners, a place's rasters of a time series, the Taizhou
pair and its reference, captioned images).

The readers (`rsneo.data.recipes`) and the torchgeo datasets (`rsneo.data.datasets`) list an archive's
samples through these functions, so a layout rule (file names, optional parts, the error for an empty
folder) is written once. Light on purpose: no raster is read. The labelled layouts (`A/ B/ label/`, image and
mask folders) are parsed in `rsneo.data.labelled`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rsneo.errors import InputError
from rsneo.io.read import RASTER_SUFFIXES


@dataclass(frozen=True)
class Sen1Floods11Chip:
    """The files of one Sen1Floods11 chip; `s1` and `label` are where they belong (they may be absent)."""

    stem: str
    s2: Path
    s1: Path
    label: Path


def sen1floods11_chips(root: str | Path) -> list[Sen1Floods11Chip]:
    """The chips of a Sen1Floods11 folder (`S2/*_S2Hand.tif`, `S1/*_S1Hand.tif`, `Labels/*_LabelHand.tif`),
    sorted by name: the one parser of that layout, which the dataset, the shard recipe and the training corpus
    share."""
    root = Path(root)
    chips = []
    for s2 in sorted((root / "S2").glob("*_S2Hand.tif")):
        stem = s2.name.removesuffix("_S2Hand.tif")
        s1, label = root / "S1" / f"{stem}_S1Hand.tif", root / "Labels" / f"{stem}_LabelHand.tif"
        chips.append(Sen1Floods11Chip(stem, s2, s1, label))
    if not chips:
        raise InputError(f"{root}: expected S2/*_S2Hand.tif chips (Sen1Floods11 layout), found none")
    return chips


@dataclass(frozen=True)
class BigEarthNetPatch:
    """One BigEarthNet patch folder of one-band GeoTIFFs; `labels` None when it has no labels metadata."""

    folder: Path
    labels: tuple[str, ...] | None


def bigearthnet_patches(root: str | Path) -> list[BigEarthNetPatch]:
    """The patches of a BigEarthNet folder (one folder of band GeoTIFFs per patch, labels in
    `*_labels_metadata.json`), sorted by name: the one parser of that layout."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.tif")))
    if not folders:
        raise InputError(f"{root}: expected BigEarthNet patch folders of band GeoTIFFs, found none")
    patches = []
    for folder in folders:
        meta = next(folder.glob("*_labels_metadata.json"), None)
        labels = tuple(json.loads(meta.read_text())["labels"]) if meta else None
        patches.append(BigEarthNetPatch(folder, labels))
    return patches


def bigearthnet_s1_folder(patch: BigEarthNetPatch, s1_root: Path) -> Path | None:
    """The Sentinel-1 patch over the same ground as a Sentinel-2 one: BigEarthNet-S1 names end with the same
    tile row and column as the S2 names (`..._87_48`)."""
    key = "_" + "_".join(patch.folder.name.split("_")[-2:])
    if not s1_root.is_dir():
        return None
    return next((p for p in sorted(s1_root.iterdir()) if p.is_dir() and p.name.endswith(key)), None)


def date_rasters(folder: Path) -> list[Path]:
    """The rasters of one place in a folder, one per date, sorted by name: the time-series layout that the
    shard recipe, the training corpus and the NAIP change sources share (reading them orders them by date)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


def bigearthnet_roots(root: str | Path) -> tuple[Path, Path | None]:
    """The Sentinel-2 patch folder of a BigEarthNet archive and its Sentinel-1 partner folder, if any.

    `root` is either the archive (holding `BigEarthNet-S2-*` and `BigEarthNet-S1-*` folders) or the S2 patch
    folder itself (its S1 partner then sits beside it, named with S1 for S2)."""
    root = Path(root)
    s2 = next((p for p in sorted(root.glob("*-S2*")) if p.is_dir()), None) if root.is_dir() else None
    if s2 is None:
        s2 = root
    s1 = s2.with_name(s2.name.replace("-S2", "-S1"))
    return s2, (s1 if s1 != s2 and s1.is_dir() else None)


@dataclass(frozen=True)
class ChangeReference:
    """A dated pair with a sparse reference: `changed` / `unchanged` are images marking the checked pixels
    (the Taizhou Landsat pair of ChangeDetectionRepository)."""

    dates: tuple[Path, Path]
    changed: Path
    unchanged: Path


def taizhou_pair(root: str | Path) -> ChangeReference:
    """The Taizhou layout: `2000TM`, `2003TM` (ENVI) with `change.bmp` and `unchanged.bmp`."""
    root = Path(root)
    dates = (root / "2000TM", root / "2003TM")
    reference = ChangeReference(dates, root / "change.bmp", root / "unchanged.bmp")
    for path in (*reference.dates, reference.changed, reference.unchanged):
        if not path.exists():
            raise InputError(f"{path}: expected this file of the Taizhou change layout, found none")
    return reference


@dataclass(frozen=True)
class CaptionedImage:
    image: Path
    captions: tuple[str, ...]


def captioned_images(root: str | Path) -> list[CaptionedImage]:
    """A JSON list `[{"image": path, "captions": [...]}]` (`root` the file or a folder holding
    `manifest.json`); image paths are relative to the file."""
    root = Path(root)
    path = root / "manifest.json" if root.is_dir() else root
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: expected a captions JSON list of {{image, captions}}, could not read it ({exc})"
        ) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise InputError(f'{path}: expected a JSON list of {{"image": ..., "captions": [...]}} entries')
    return [CaptionedImage(path.parent / e["image"], tuple(e.get("captions", []))) for e in entries]
