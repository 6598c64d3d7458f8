"""Archive layouts, parsed in one place: which files make up each sample of a known archive.

The torchgeo datasets (`rsneo.data.datasets`), the shard recipes (`rsneo.data.recipes`) and the training
corpus (`rsneo.train.corpus`) all list an archive's samples through these functions, so a layout rule (file
names, optional parts, the error for an empty folder) is written once. Light on purpose: no raster is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsneo.errors import InputError


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
