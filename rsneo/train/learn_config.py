"""The typed schema of `rsneo learn`: the one home of its defaults.

`LearnConfig` is a whole run, `LearnSettings` how the head trains (recorded in learn.json). Hydra composes
`rsneo/configs/learn.yaml` (which sets nothing itself), an experiment or YAML file and KEY=VALUE overrides
into `LearnConfig` (registered as `learn_schema` by `rsneo.train.schema.register`), so a misspelt key or a
value of the wrong type fails at start naming the key; the command's options show these defaults and, when
typed, win over the config. Plain dataclasses with no heavy import, so `rsneo --help` can read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LearnSettings:
    """How the head is trained; recorded in learn.json."""

    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # L2 pull of the trained decoder layers back to the starting model's (L2-SP), divided by the number of
    # training features: a prior worth a fixed number of labels, strong with 5 points, faint with 500
    anchor: float = 1.0
    window: int = 256  # pixels a side, whole image tokens of the model (multiples of 32 for NEO)
    windows_per_step: int = 8
    # spatial k-fold score: every feature held out once, by a head trained without its fold (0: no score)
    folds: int = 4
    blocks: int = 4  # the labels' extent is cut into blocks x blocks squares (finer when labels cluster)
    seed: int = 0
    # what the head reads: "all" (the backbone's context and the raw bands, through the per-pixel stem),
    # "pixels" (the raw bands only: the context projection is zeroed and frozen), or "auto": the one with the
    # lower loss on inner spatial hold-outs of each fold's training features (never the fold it is scored on)
    features: str = "auto"
    select_rounds: int = 1  # inner hold-out splits per fold (other seeds), summed over the folds for "auto"


FEATURES = ("auto", "all", "pixels")


@dataclass
class LearnConfig:
    """A whole `rsneo learn` run."""

    rasters: list[Path] = field(default_factory=list)  # the raster(s) the labels were drawn on
    labels: Path | None = None  # polygons or points (GeoPackage, Shapefile, GeoJSON; any CRS)
    class_field: str | None = None  # the field holding each feature's class
    out: Path | None = None  # the model folder to write (a new or empty folder)
    model: Path | None = None  # the model folder to start from; None: the bundled model
    sensor: str | None = None  # when the rasters' metadata does not tell
    bands: list[str] | None = None  # the rasters' band names in file order, e.g. [B5, B4, B3, B2]
    device: str = "cpu"  # of the backbone pass
    threads: int | None = None  # CPU threads; None: RSNEO_THREADS, else the free cores (rsneo.model.threads)
    overwrite: bool = False  # replace a non-empty `out`
    # where experiments find the sample data (`${data_root}/sen1floods11/...`); relative to the working folder
    data_root: str = "${oc.env:RSNEO_DATA,../shared/data}"
    settings: LearnSettings = field(default_factory=LearnSettings)
