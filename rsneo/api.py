"""The public Python API: `rsneo.load()` gives a `Model` whose `segment`, `change` and `ask` make the same
files as the commands and hand back the maps as xarray (classes with confidence, class names, CRS) and the
polygons as a GeoDataFrame; `rsneo.learn` teaches new classes from polygons. The CLI is a thin layer
over these.

```python
import rsneo
m = rsneo.load()                                   # the bundled model, or rsneo.load("models/mine")
seg = m.segment("scene.tif", classes="water, land")
seg.classes                                        # xarray (y, x) class indices; .confidence, attrs
seg.polygons                                       # GeoDataFrame: class, area_ha, geometry
m.ask("scene.tif", "How much of the image is water?").text
run = rsneo.fit(["experiment=smoke", "out_dir=runs/smoke"])  # as `rsneo train`; the run's folder
rsneo.export(run / "checkpoints" / "last.ckpt", "models/mine")
```

A raster is a local file, a band folder, a local STAC item, or a remote COG (`https://...`, `/vsicurl/...`,
`/vsis3/...`, `s3://...`) read window by window over HTTP range requests.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsneo.data.frames import check_band_groups, model_band_groups
from rsneo.demo import DemoSamples, bundled_samples, class_picture, true_colour
from rsneo.errors import InputError, RSNeoWarning
from rsneo.heads.system import System, load_system
from rsneo.io.cog import read_legend
from rsneo.io.dataset import open_raster
from rsneo.io.remote import RasterPath, local_input
from rsneo.io.sieve import DEFAULT_MIN_AREA
from rsneo.io.vector import LAYER
from rsneo.model.threads import use_threads
from rsneo.predict.answers import Answer
from rsneo.predict.ask import ask as ask_product
from rsneo.predict.buildings import map_new_buildings
from rsneo.predict.change import detect_change
from rsneo.predict.requests import (
    AskRequest,
    BuildingsRequest,
    ChangeOutputs,
    ChangeRequest,
    SegmentOutputs,
    SegmentRequest,
    parse_classes,
)
from rsneo.predict.segment import segment_raster
from rsneo.predict.sliding_window import WindowPlan
from rsneo.train.learn_config import LearnConfig, LearnSettings
from rsneo.version import __version__

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

    from rsneo.train.learn import LearnResult

__all__ = [
    "Change", "Model", "Segmentation", "class_picture", "export", "fit", "learn", "load", "samples",
    "true_colour",
]  # fmt: skip


class ModelSetupWarning(RSNeoWarning):
    """The model folder lacks a trained head a product relies on, or runs with band groups it was not
    trained with: its results are less accurate than the model card says."""


def samples() -> DemoSamples:
    """The sample imagery bundled with rsneo (paths): `.sentinel2`, `.sentinel1`, `.landsat_before`, ...
    (rsneo/assets/ATTRIBUTION.md)."""
    return bundled_samples()


def load(
    model: str | Path | None = None,
    device: str = "cpu",
    band_groups: str | None = None,
    threads: int | None = None,
) -> Model:
    """The model folder `model` (None: the bundled model) on `device`, ready to segment, change and ask.

    `band_groups` ("sensor" or "fold") overrides how bands become tokens, with a warning when the model was
    trained otherwise. `threads`: CPU threads for torch (None: RSNEO_THREADS, else the free cores this
    process may use, at most 8; rsneo.model.threads).
    """
    use_threads(threads, "threads")
    if band_groups is not None:
        band_groups = check_band_groups(band_groups, "--band-groups")
    system = load_system(Path(model) if model is not None else None, device=device)
    trained = model_band_groups(system.config)
    if band_groups is not None and band_groups != trained:
        warnings.warn(
            f"{system.folder} was trained with --band-groups {trained}; using {band_groups} as asked "
            "(expect less accurate results)",
            ModelSetupWarning,
            stacklevel=2,
        )
        system.config.band_groups = band_groups
    return Model(system)


@dataclass
class Segmentation:
    """What `Model.segment` made: the files written, the totals, and the maps read from those files on first
    use (`classes`, `polygons`), so a caller that wants only the files never holds the map in memory."""

    outputs: SegmentOutputs  # the files: cog, gpkg, qml, qgz, confidence
    areas: dict[str, float]  # class name -> hectares (pixels without a CRS: see area_unit)
    area_unit: str  # "ha" or "px"
    notes: tuple[str, ...] = ()  # caveats written into the outputs (imagery outside the training data)

    @functools.cached_property
    def classes(self) -> xr.DataArray:
        """(y, x) uint8 class index (255: nodata), the winning probability in percent as coordinate
        `confidence`, attrs class_names, class_labels, crs, transform (as `rsneo.io.scene.read_scene`)."""
        return map_array(self.outputs.cog, self.outputs.confidence)

    @functools.cached_property
    def polygons(self) -> gpd.GeoDataFrame:
        """One row per connected region: class_id, class_name, area_ha (area_px), geometry (EPSG:4326)."""
        return read_polygons(self.outputs.gpkg)


@dataclass
class Change:
    """What `Model.change` made: the files, the totals, and the change map and polygons read on first use."""

    outputs: ChangeOutputs  # the files: cog, gpkg, qml, qgz, table, report
    changed_area: float
    compared_area: float
    area_unit: str
    summary: str  # the report's summary, written from the measured numbers
    notes: tuple[str, ...] = ()

    @property
    def changed_share(self) -> float:
        """Changed area as a share (0..1) of the area valid on every date."""
        return self.changed_area / self.compared_area if self.compared_area else 0.0

    @functools.cached_property
    def classes(self) -> xr.DataArray:
        """(y, x) uint8 change class (255: nodata), attrs class_names, crs, transform."""
        return map_array(self.outputs.cog, None)

    @functools.cached_property
    def polygons(self) -> gpd.GeoDataFrame:
        return read_polygons(self.outputs.gpkg)


@dataclass
class Model:
    """A loaded model folder: backbone, tokenizer and heads (`rsneo.heads.system.System`)."""

    system: System
    _scratch: list[Path] = field(default_factory=list, repr=False)

    @property
    def folder(self) -> Path | None:
        return self.system.folder

    def segment(
        self,
        raster: RasterPath,
        classes: str | Sequence[str],
        out: str | Path | None = None,
        *,
        sensor: str | None = None,
        bands: Sequence[str] | None = None,
        none_threshold: float | None = None,
        window: int = 256,
        overlap: int = 32,
        batch: int = 4,
        strict: bool = False,
        show_progress: bool = False,
        min_area: str | float = DEFAULT_MIN_AREA,
        simplify: str | float | None = None,
    ) -> Segmentation:
        """Segment `raster` into the classes named as words; files go to `out` (None: a new temporary
        folder, kept). `min_area`: regions smaller than this ("0.5" ha, "4px") join their largest neighbour
        before polygons; `simplify`: polygon tolerance ("1.5px" or map units). An interrupted run into the
        same `out` resumes."""
        self.warn_untrained("segmentation")
        names = parse_classes(classes)
        out_dir = self._out(out)
        plan = self.plan(window, overlap, batch)
        local = local_input(raster, out_dir)
        request = SegmentRequest(
            raster=local, classes=names, out=out_dir, sensor=sensor, bands=_tuple(bands), plan=plan,
            none_threshold=none_threshold, strict=strict, show_progress=show_progress, min_area=min_area,
            simplify=simplify,
        )  # fmt: skip
        result = segment_raster(self.system, request)
        return Segmentation(result, dict(result.areas), result.area_unit, tuple(result.notes))

    def change(
        self,
        *rasters: RasterPath,
        out: str | Path | None = None,
        classes: str | Sequence[str] | None = None,
        of: str | None = None,
        pixel_size: float | None = None,
        sensor: str | None = None,
        bands: Sequence[str] | None = None,
        window: int = 256,
        overlap: int = 32,
        batch: int = 2,
        strict: bool = False,
        show_progress: bool = False,
        min_area: str | float = DEFAULT_MIN_AREA,
        simplify: str | float | None = None,
    ) -> Change:
        """Change between the first and last of `rasters` (dates of one place, oldest first); `classes` adds
        from-to classes, `of="buildings"` maps new buildings only (RGB, 2 m or finer)."""
        if len(rasters) == 1 and not isinstance(rasters[0], str | Path):
            rasters = tuple(rasters[0])  # m.change([a, b]) as well as m.change(a, b)
        names = parse_classes(classes) if classes is not None else None
        buildings = wants_buildings(of, names)
        self.warn_untrained("change")
        out_dir = self._out(out)
        local = tuple(local_input(r, out_dir) for r in rasters)
        reading = dict(sensor=sensor, bands=_tuple(bands), plan=self.plan(window, overlap, batch),
                       show_progress=show_progress, min_area=min_area, simplify=simplify)  # fmt: skip
        if buildings:
            request = BuildingsRequest(rasters=local, out=out_dir, pixel_size=pixel_size, **reading)
            result = map_new_buildings(self.system, request)
        else:
            request = ChangeRequest(rasters=local, out=out_dir, classes=names, strict=strict, **reading)
            result = detect_change(self.system, request)
        return Change(
            result, result.changed_area, result.compared_area, result.area_unit, result.summary,
            tuple(result.notes),
        )  # fmt: skip

    def ask(
        self,
        rasters: RasterPath | Sequence[RasterPath],
        question: str,
        *,
        sensor: str | None = None,
        bands: Sequence[str] | None = None,
        max_side: int = 512,
        pixel_size: float | None = None,
        min_area: str | float = DEFAULT_MIN_AREA,
    ) -> Answer:
        """The answer to `question` about one raster or dates of one place (oldest first), read from the
        model's maps: `.text`, `.kind`, `.value` (the measured percentage), `.abstained`."""
        paths = [rasters] if isinstance(rasters, str | Path) else list(rasters)
        with tempfile.TemporaryDirectory(prefix="rsneo-ask-") as scratch:
            local = tuple(local_input(r, Path(scratch)) for r in paths)
            request = AskRequest(
                rasters=local, question=question, sensor=sensor, bands=_tuple(bands), max_side=max_side,
                pixel_size=pixel_size, min_area=min_area,
            )  # fmt: skip
            return ask_product(self.system, request)

    def plan(self, window: int, overlap: int, batch: int) -> WindowPlan:
        """The window plan, checked against this model (whole image tokens)."""
        return window_plan(window, overlap, batch, self.system.config.token_size)

    def _out(self, out: str | Path | None) -> Path:
        if out is not None:
            return Path(out)
        folder = Path(tempfile.mkdtemp(prefix="rsneo-"))
        self._scratch.append(folder)
        return folder

    def warn_untrained(self, head: str) -> None:
        if head not in self.system.trained_heads:
            warnings.warn(
                f"{self.system.folder} has no trained {head} head; using a fresh one",
                ModelSetupWarning,
                stacklevel=3,
            )


def window_plan(window: int, overlap: int, batch: int, token_size: int | None = None) -> WindowPlan:
    """Windows of `window` pixels overlapping by `overlap`, `batch` per model call; with `token_size` (known
    once the model has loaded) the window must hold whole image tokens."""
    if window <= 0:
        raise InputError(f"--window: expected a positive number of pixels, got {window}")
    if token_size is not None and window % token_size:
        raise InputError(
            f"--window: expected a multiple of the model's token size ({token_size} pixels), got {window}"
        )
    if not 0 <= overlap < window:
        raise InputError(f"--overlap: expected 0 <= overlap < window ({window}), got {overlap}")
    if batch < 1:
        raise InputError(f"--batch: expected at least 1, got {batch}")
    return WindowPlan(window, overlap, batch)


def wants_buildings(of: str | None, classes: Sequence[str] | None) -> bool:
    """Whether `of` asks for the new-building map (the one kind of change mapped apart)."""
    if of is None:
        return False
    if of.strip().lower() not in ("building", "buildings"):
        raise InputError(f"--of: expected buildings (the one kind of change mapped apart), got {of!r}")
    if classes:
        raise InputError("--of buildings maps new buildings; it cannot be combined with --classes")
    return True


def learn(
    rasters: RasterPath | Sequence[RasterPath] | LearnConfig,
    labels: str | Path | None = None,
    class_field: str | None = None,
    out: str | Path | None = None,
    *,
    model: str | Path | None = None,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    show_progress: bool = False,
    **settings: Any,
) -> LearnResult:
    """Teach a model new classes from polygons or points (`labels`, one class per feature in `class_field`)
    drawn on `rasters`; writes the model folder `out` for `rsneo.load(out)`.

    `settings` are `rsneo.train.learn_config.LearnSettings` fields (steps, lr, folds, window, seed,
    features, ...). A whole `LearnConfig` (as `rsneo learn --config` composes it) may be given instead.
    """
    if isinstance(rasters, LearnConfig):
        config = rasters
    else:
        unknown = sorted(set(settings) - set(LearnSettings.__dataclass_fields__))
        if unknown:
            known = sorted(LearnSettings.__dataclass_fields__)
            raise InputError(f"learn: unknown settings {unknown}; expected some of {known}")
        if labels is None or class_field is None or out is None:
            raise InputError("learn: expected rasters, labels, class_field and out")
        paths = [rasters] if isinstance(rasters, str | Path) else list(rasters)
        config = LearnConfig(
            rasters=[Path(p) for p in paths], labels=Path(labels), class_field=class_field, out=Path(out),
            model=Path(model) if model is not None else None, sensor=sensor,
            bands=list(bands) if bands is not None else None, device=device, overwrite=overwrite,
            settings=LearnSettings(**settings),
        )  # fmt: skip
    # on use: `rsneo change` starts without training code
    from rsneo.train.learn import learn as learn_product

    system = load(config.model, device=config.device, threads=config.threads).system
    return learn_product(system, config, show_progress=show_progress)


def fit(overrides: Sequence[str] = ()) -> Path:
    """Train as `rsneo train KEY=VALUE ...` does (Hydra overrides, e.g. `["experiment=smoke",
    "trainer.max_steps=50"]`); returns the run's folder: metrics.csv, config.yaml, checkpoints/last.ckpt.
    A run started again with `resume=FOLDER/checkpoints/last.ckpt` continues. (Not `rsneo.train`: that name
    is the training package.)"""
    # on use, as in learn: the products start without training code
    from rsneo.train.config import load_config
    from rsneo.train.run import train

    cfg = load_config(training_overrides(overrides, "rsneo train"))
    if cfg.finetune.task:
        raise InputError(
            f"fit: experiment=finetune_{cfg.finetune.task} trains a head into a model folder; "
            f"run `rsneo finetune {cfg.finetune.task}` instead"
        )
    return train(cfg).out_dir


def training_overrides(overrides: Sequence[str], command: str) -> list[str]:
    """`overrides` checked to be KEY=VALUE items (Hydra's syntax), as a list."""
    if isinstance(overrides, str):
        overrides = [overrides]
    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise InputError(f"{command}: expected KEY=VALUE overrides, got {bad}")
    return list(overrides)


def export(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """The model of a training checkpoint (`fit`'s checkpoints/last.ckpt) as a model folder for
    `rsneo.load(out)` and every command's --model; returns the folder (`rsneo export`)."""
    from rsneo.train.export import export_checkpoint  # on use, as in fit

    return export_checkpoint(checkpoint, out, overwrite)


def map_array(cog: Path, confidence: Path | None) -> xr.DataArray:
    """A class-map COG as a DataArray (y, x) with the class names and georeference of `read_scene`'s scenes
    (`crs` WKT or "" for pixel units, `transform` 6 coefficients, `y`/`x` pixel centres), and the winning
    probability in percent as coordinate `confidence` when its COG is given."""
    import xarray as xr  # on use: `rsneo change` starts without xarray (tests/test_startup.py)

    legend = read_legend(cog)
    with open_raster(cog) as src:
        values = src.read(1)
        crs, transform, nodata = src.crs, src.transform, src.nodata
    x = transform.c + (np.arange(values.shape[1]) + 0.5) * transform.a
    y = transform.f + (np.arange(values.shape[0]) + 0.5) * transform.e
    coords: dict[str, Any] = {"y": y, "x": x}
    if confidence is not None:
        with open_raster(confidence) as src:
            coords["confidence"] = (("y", "x"), src.read(1))
    return xr.DataArray(
        values,
        dims=("y", "x"),
        coords=coords,
        name="classes",
        attrs={
            "class_names": list(legend.names),
            "class_labels": [legend.label(i) for i in range(len(legend.names))],
            "class_colors": [legend.hex(i) for i in range(len(legend.names))],
            "nodata": nodata,
            "crs": crs.to_wkt() if crs is not None else "",
            "transform": tuple(transform)[:6],
            "notes": list(legend.notes),
            "source": str(cog),
            "rsneo_version": __version__,
        },
    )


def read_polygons(gpkg: Path) -> gpd.GeoDataFrame:
    """The polygons a product wrote (layer `classes` of its GeoPackage)."""
    import geopandas as gpd  # on use, as xarray above

    return gpd.read_file(gpkg, layer=LAYER)


def _tuple(values: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = values.split(",")
    return tuple(v.strip() for v in values if v.strip())
