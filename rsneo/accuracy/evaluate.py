"""`rsneo evaluate`: a model folder measured on labelled samples, through the predictors users run.

Each sample's files go through `rsneo segment` / `rsneo change` exactly as a user would run them
(`predicted_map`, the one call into the predictors), so whatever head a model folder has, the scores are
those of the maps users get. A sample cut from a larger image is read from the map of the whole image
(predicted once). Scored pixels: labelled (not -1), with a prediction and valid input on every date. For
change, change-vector analysis cut by Otsu's threshold and the all-changed map are scored on the same
pixels. Scores are pooled over all samples (one confusion matrix) by `rsneo.metrics`.

With an output folder the maps are kept there (one folder per image, with a record of the settings that
made it), so an interrupted evaluation resumes: a finished map made with the same model and settings is
read again instead of predicted.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsneo import atomic
from rsneo.baselines import cva_otsu
from rsneo.data.labelled import Sample
from rsneo.errors import InputError, RSNeoWarning
from rsneo.heads.segmentation import NONE_OF_THESE
from rsneo.heads.system import System
from rsneo.io.cog import NODATA_CLASS, check_writable
from rsneo.io.dataset import dataset_grid, open_raster
from rsneo.io.runstate import fingerprint, folder_fingerprint, output_lock
from rsneo.io.scene import grid_of
from rsneo.metrics import Scores, confusion_matrix, scores
from rsneo.predict.change import detect_change
from rsneo.predict.requests import ChangeRequest, SegmentRequest
from rsneo.predict.resume import run_signature
from rsneo.predict.segment import segment_raster
from rsneo.predict.sliding_window import WindowPlan

CHANGE, SEGMENTATION = "change", "segmentation"
RECORD = "evaluate.json"  # in each map's folder: the settings that made the map
CVA_OTSU, ALL_CHANGED = "CVA + Otsu", "all changed"


@dataclass(frozen=True)
class Settings:
    """How the predictors run, as the `segment` / `change` options say."""

    plan: WindowPlan = WindowPlan()
    sensor: str | None = None
    bands: list[str] | None = None


@dataclass(frozen=True)
class SampleScore:
    name: str
    scores: Scores
    unpredicted: int  # labelled pixels without a prediction (no valid input)


@dataclass
class Evaluation:
    """Pooled scores of a model and, for change, of the baselines on the same pixels."""

    task: str
    classes: tuple[str, ...]  # reference classes (confusion rows)
    columns: tuple[str, ...]  # predicted classes (confusion columns; segmentation adds "none of these")
    model: Scores
    baselines: dict[str, Scores]
    samples: list[SampleScore]
    notes: list[str] = field(default_factory=list)  # warnings of the predictors, one line per kind

    @property
    def unpredicted(self) -> int:
        return sum(s.unpredicted for s in self.samples)

    def to_json(self) -> dict:
        """The document `rsneo evaluate --json` prints (schema in docs/products.md)."""
        return {
            "task": self.task,
            "classes": list(self.classes),
            "predicted_classes": list(self.columns),
            "samples": len(self.samples),
            "pixels": {"scored": int(self.model.confusion.sum()), "unpredicted": self.unpredicted},
            **self.model.to_json(),
            "baselines": {name: s.to_json() for name, s in self.baselines.items()},
            "per_sample": [
                {"name": s.name, "unpredicted": s.unpredicted, **s.scores.to_json()} for s in self.samples
            ],
            "notes": self.notes,
        }


def task_of(samples: Sequence[Sample]) -> str:
    """Change for two-date samples, segmentation for one date; a mixture is an InputError."""
    dates = {s.scene.sizes["time"] for s in samples}
    if dates == {2}:
        return CHANGE
    if dates == {1}:
        return SEGMENTATION
    raise InputError(f"evaluate: expected samples of one date (segmentation) or two (change), got {dates}")


def predicted_map(
    system: System, task: str, sources: list[Path], classes: list[str], out: Path, settings: Settings
) -> Path:
    """The class map that `rsneo segment` / `rsneo change` write for these files (the one place evaluation
    calls the predictors)."""
    reading = dict(plan=settings.plan, sensor=settings.sensor, bands=settings.bands)
    if task == CHANGE:
        return detect_change(system, ChangeRequest(rasters=sources, out=out, **reading)).cog
    request = SegmentRequest(raster=sources[0], classes=tuple(classes), out=out, confidence=False, **reading)
    return segment_raster(system, request).cog


def sample_window(source: Path, sample: Sample):
    """Where `sample` lies in the map of its source file: the whole map, or the pixel window of a chip."""
    height, width = sample.scene.sizes["y"], sample.scene.sizes["x"]
    with open_raster(source) as src:
        grid = dataset_grid(src)
    if (grid.height, grid.width) == (height, width):
        return None
    window = grid_of(sample.scene).aligned_window_in(grid)
    if window is None:
        raise InputError(f"{source}: sample {sample.name} is not a pixel window of it; expected chips cut "
                         "from the image on its own pixel grid")  # fmt: skip
    return window


class MapCache:
    """Maps of the source files, predicted once each; kept in `folder` with a record for resuming."""

    def __init__(self, system: System, task: str, classes: list[str], folder: Path, settings: Settings):
        self.system, self.task, self.classes, self.settings = system, task, classes, settings
        self.folder = folder
        self.maps: dict[tuple[str, ...], Path] = {}
        self.warnings: list[warnings.WarningMessage] = []

    def signature(self, sources: list[Path]) -> str:
        return run_signature(
            task=self.task, inputs=fingerprint(sources), classes=self.classes,
            model=folder_fingerprint(self.system.folder), heads=self.system.trained_heads,
            plan=self.settings.plan, sensor=self.settings.sensor, bands=self.settings.bands,
        )  # fmt: skip

    def __call__(self, sources: list[Path]) -> Path:
        key = tuple(str(s) for s in sources)
        if key not in self.maps:
            self.maps[key] = self._map(sources)
        return self.maps[key]

    def _map(self, sources: list[Path]) -> Path:
        out = self.folder / _folder_name(sources[0], {p.parent.name for p in self.maps.values()})
        signature = self.signature(sources)
        record = out / RECORD
        kept = _read_record(record)
        if kept.get("signature") == signature and (out / kept["map"]).is_file():
            return out / kept["map"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cog = predicted_map(self.system, self.task, sources, self.classes, out, self.settings)
        self.warnings += caught
        kept = {"signature": signature, "map": cog.name, "sources": [str(s) for s in sources]}
        atomic.write_text(record, json.dumps(kept))
        return cog


def _read_record(path: Path) -> dict:
    """A map's record, or {} when there is none or it cannot be trusted (damaged, or naming a path)."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    name = kept.get("map") if isinstance(kept, dict) else None
    return kept if isinstance(name, str) and name == Path(name).name else {}


def _folder_name(source: Path, taken: set[str]) -> str:
    name, n = source.stem, 1
    while name in taken:
        n += 1
        name = f"{source.stem}_{n}"
    return name


def score_sample(
    sample: Sample, predicted: np.ndarray, task: str, columns: int
) -> tuple[SampleScore, dict[str, np.ndarray]]:
    """Scores of one sample's predicted classes, and (change) the baselines' confusion on the same pixels."""
    k = len(sample.classes)
    valid = np.isfinite(sample.scene.values).all(axis=(0, 1))  # (y, x): every band of every date
    labelled = sample.mask >= 0
    scored = labelled & valid & (predicted != NODATA_CLASS)
    reference = np.where(scored, sample.mask, -1)
    confusion = confusion_matrix(reference, np.where(scored, predicted, 0), k, columns)
    result = SampleScore(sample.name, scores(confusion, sample.classes), int((labelled & ~scored).sum()))
    baselines = {}
    if task == CHANGE:
        pixels = sample.scene.values[:, :, valid]  # (2, bands, n): the whole pair, as CVA reads it
        cva = np.zeros(predicted.shape, np.int64)
        if pixels.shape[-1] > 1:
            cva[valid] = cva_otsu(pixels[0][:, None], pixels[1][:, None])[0]
        baselines[CVA_OTSU] = confusion_matrix(reference, cva, k)
        baselines[ALL_CHANGED] = confusion_matrix(reference, np.ones_like(cva), k)
    return result, baselines


@contextlib.contextmanager
def _map_folder(out: Path | None) -> Iterator[Path]:
    """`out`/maps held by this process, or a temporary folder removed afterwards."""
    if out is None:
        with tempfile.TemporaryDirectory(prefix="rsneo-evaluate-") as tmp:
            yield Path(tmp)
        return
    out = check_writable(Path(out))
    with output_lock(out):
        yield check_writable(out / "maps")


def evaluate(
    system: System,
    samples: Sequence[Sample],
    *,
    settings: Settings = Settings(),
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Run the model over `samples` through the predictors and score the maps against their masks.

    `out` keeps the maps (and `evaluation.json`) and lets an interrupted run resume; `progress` is called
    with each sample's name as it is done.
    """
    if not samples:
        raise InputError("evaluate: no labelled sample to evaluate")
    task = task_of(samples)
    classes = tuple(samples[0].classes)
    if any(tuple(s.classes) != classes for s in samples):
        raise InputError(f"evaluate: samples with different class tables ({classes} and others)")
    if task == CHANGE and len(classes) != 2:
        raise InputError(f"evaluate: change is scored as change / no change; got the classes {classes}")
    columns = classes + ((NONE_OF_THESE,) if task == SEGMENTATION else ())
    totals = {"model": np.zeros((len(classes), len(columns)), np.int64)}
    done = []
    with _map_folder(out) as folder:
        cache = MapCache(system, task, list(classes), folder, settings)
        for sample in samples:
            sources = [Path(p) for p in sample.scene.attrs.get("sources", [])]
            if not sources:
                raise InputError(f"evaluate: sample {sample.name} does not name the files it was read from")
            cog = cache(sources)
            with open_raster(cog) as src:
                predicted = src.read(1, window=sample_window(sources[0], sample)).astype(np.int64)
            result, baselines = score_sample(sample, predicted, task, len(columns))
            totals["model"] += result.scores.confusion
            for name, confusion in baselines.items():
                totals[name] = totals.get(name, 0) + confusion
            done.append(result)
            if progress is not None:
                progress(sample.name)
        notes = summarised_warnings(cache.warnings)
    model = scores(totals.pop("model"), classes)
    evaluation = Evaluation(
        task, classes, columns, model, {n: scores(c, classes) for n, c in totals.items()}, done, notes
    )
    if out is not None:
        atomic.write_text(Path(out) / "evaluation.json", json.dumps(evaluation.to_json(), indent=1))
    return evaluation


def summarised_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """One line per kind of rsneo warning (the first message, and how many more alike)."""
    kinds: dict[type, list[str]] = {}
    for w in caught:
        if not (issubclass(w.category, RSNeoWarning) or "rsneo" in w.filename):
            continue  # third-party noise (deprecations inside libraries)
        kinds.setdefault(w.category, []).append(str(w.message))
    lines = []
    for messages in kinds.values():
        unique = list(dict.fromkeys(messages))
        more = f" (and {len(unique) - 1} more alike)" if len(unique) > 1 else ""
        lines.append(unique[0] + more)
    return lines
