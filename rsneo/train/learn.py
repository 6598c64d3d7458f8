"""`rsneo learn`: new classes from a few polygons or points, trained on top of a frozen backbone.

Why this is fast on a CPU: the backbone runs once per labelled window (its hidden states are cached,
`learn_pixels`), then only the segmentation head trains (`learn_fit`): its light decoder (backbone features +
a per-pixel stem over the raw normalised bands) and one class vector per new class, initialised from the class
name's prompt encoding. The learnt vectors are stored beside the heads (`rsneo.heads.fewshot`), so `segment
--classes <names>` gives exactly the classes trained here (`learn_folder`).

What the head reads (`LearnSettings.features`): the backbone context and the raw bands ("all"), or the raw
bands only ("pixels": the context projection zeroed, for imagery the backbone never learnt, where its context
misleads a few labels); "auto" picks one by inner spatial hold-outs of the training features.

Honest scores (`learn_holdout`): spatial k-fold over whole features (polygons, points), never pixels of one
feature on both sides, folds balanced per class (their blocks refined when a class's features cluster); each
fold's head is trained without it and scored on it (IoU, F1 per class, with "none of these" counted as wrong,
as `segment` would decide); a class scored from fewer than 3 features on either side is warned about. The
written model is trained on every feature. Invalid label geometries are repaired on reading (counted).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rsneo.errors import InputError, RSNeoWarning
from rsneo.heads.features import encode_class_prompts
from rsneo.heads.fewshot import LearntClasses
from rsneo.heads.system import System
from rsneo.io.labels import read_labels
from rsneo.train.learn_config import FEATURES, LearnConfig, LearnSettings
from rsneo.train.learn_fit import CONTEXT_WEIGHT, TRAINED, fit_head
from rsneo.train.learn_folder import (
    base_classes_kept,
    check_destination,
    with_base_learnt,
    write_model_folder,
)
from rsneo.train.learn_holdout import (
    ClassScore,
    CrossValidation,
    choose_features,
    cross_validate,
    feature_centres,
    mean_score,
    selection_fits,
)
from rsneo.train.learn_pixels import Tick, count_windows, labelled_windows, prepare_rasters


class HoldoutWarning(RSNeoWarning):
    """A learnt class was scored from too few features on one side of a hold-out: its score is unreliable."""


@dataclass
class LearnResult:
    out: Path
    classes: list[str]
    scores: dict[str, ClassScore]
    record: dict = field(default_factory=dict)


def check_settings(settings: LearnSettings, token_size: int) -> None:
    """The settings a user may get wrong, named by their option; windows hold whole image tokens."""
    if settings.window <= 0 or settings.window % token_size:
        raise InputError(
            f"--window: expected a positive multiple of {token_size} pixels, got {settings.window}"
        )
    if settings.steps < 1:
        raise InputError(f"--steps: expected at least 1, got {settings.steps}")
    if settings.folds == 1 or settings.folds < 0:
        raise InputError(f"--folds: expected 0 (no score) or at least 2 folds, got {settings.folds}")
    if settings.features not in FEATURES:
        raise InputError(f"--features: expected one of {', '.join(FEATURES)}, got {settings.features!r}")


def learn(system: System, config: LearnConfig, show_progress: bool = False) -> LearnResult:
    """Learn the classes of `config.class_field` in `config.labels` on `config.rasters`; write the model
    folder `config.out`. Classes scored from fewer than 3 features on either side of a fold get a
    `HoldoutWarning` (also in learn.json)."""
    settings = config.settings
    check_settings(settings, system.config.token_size)
    out = Path(config.out)
    check_destination(out, config.overwrite)
    labels = read_labels(Path(config.labels), config.class_field)
    bands = list(config.bands) if config.bands is not None else None
    prepared = prepare_rasters(config.rasters, labels, config.sensor, bands)
    total_windows = count_windows(prepared, settings.window)
    choices = selection_fits(settings)
    fits = (1 + choices) * settings.folds if settings.folds >= 2 else choices
    total_steps = (fits + 1) * settings.steps  # the folds' fits (with their choices), then the written head
    with _progress(show_progress, total_windows, total_steps) as tick:
        windows = labelled_windows(system, prepared, settings.window, tick)
        head, vectors, checked = _fit_and_score(system, labels, windows, settings, tick)
    for message in checked.warnings:
        warnings.warn(f"{labels.path}: {message}", HoldoutWarning, stacklevel=2)
    record = learn_record(system, prepared, labels, settings, checked, [len(windows), total_windows])
    names = labels.classes
    record["base_classes"] = base_classes_kept(system, head, windows, names)
    learnt = with_base_learnt(system, LearntClasses(list(names), vectors), record["base_classes"]["kept"])
    write_model_folder(system, head, learnt, record, out, config.overwrite)
    return LearnResult(out, list(names), checked.scores, record)


def _fit_and_score(system, labels, windows, settings: LearnSettings, tick) -> tuple:
    """Score by spatial k-fold (`cross_validate`) unless `settings.folds` is 0, then train the written head
    on every feature, reading what the folds' inner hold-outs chose. Returns (head, class vectors, the
    cross-validation: no scores and no folds without one)."""
    names, feature_classes = labels.classes, labels.class_ids
    with torch.no_grad():
        init = encode_class_prompts(system.model, system.tokenizer, names, system.segmentation.config)
    init = init.float().cpu()
    centres = feature_centres(labels)
    everything = torch.ones(len(feature_classes), dtype=torch.bool)
    head = system.segmentation
    if settings.folds >= 2:
        checked = cross_validate(head, init, windows, centres, feature_classes, names, settings, tick)
    else:
        choice = choose_features(head, init, windows, everything, centres, feature_classes, settings, tick)
        checked = CrossValidation({}, choice, None)
    chosen = replace(settings, features=checked.choice.features)
    fitted, vectors = fit_head(head, init, windows, everything, chosen, tick)
    return fitted, vectors, checked


def learn_record(system, prepared, labels, settings, checked, windows) -> dict:
    """What learn.json says: the classes, where they came from, how they were trained and scored."""
    ids = labels.class_ids
    on_raster = set()
    for r in prepared:
        on_raster |= set(np.unique(r.feature[r.feature >= 0]).tolist())
    seen = np.zeros(len(ids), bool)
    seen[list(on_raster)] = True
    folds = checked.folds
    held = folds.fold >= 0 if folds is not None else np.zeros(len(ids), bool)
    counts = {
        name: {
            "features": int((ids == k).sum()),
            "on_rasters": int(((ids == k) & seen).sum()),
            "held_out": int(((ids == k) & held & seen).sum()),
            "pixels": int(sum(int((r.classes == k).sum()) for r in prepared)),
        }
        for k, name in enumerate(labels.classes)
    }
    scores = checked.scores
    method = (
        f"spatial {folds.count}-fold: whole features held out by blocks ({folds.blocks}x{folds.blocks} over "
        "the labels' extent, refined from "
        f"{settings.blocks}x{settings.blocks} where classes cluster), every feature scored once by a head "
        "trained without its fold"
        if folds is not None
        else "none (--folds 0)"
    )
    record = {
        "learnt_classes": list(labels.classes),
        "labels": str(Path(labels.path).resolve()),
        "class_field": labels.field,
        "repaired_geometries": labels.repaired,
        "rasters": [str(Path(r.path).resolve()) for r in prepared],
        "sensor": prepared[0].layout.sensor,
        "bands": list(prepared[0].layout.band_names),
        "base_model": str(system.folder) if system.folder is not None else None,
        "trained": [f"segmentation.{n}" for n in TRAINED] + ["learnt class vectors"],
        "frozen": [
            "backbone",
            "segmentation.decoder.tokens",
            "segmentation.decoder.up",
            "segmentation.class_proj",
            "change head",
        ],
        "settings": asdict(settings),
        "labelled_windows": windows[0],
        "counts": counts,
        "holdout": {
            "method": method,
            "scores": {name: asdict(s) for name, s in scores.items()},
            "mean_iou": mean_score(scores, "iou"),
            "mean_f1": mean_score(scores, "f1"),
            "warnings": list(checked.warnings),
            "written_model": "trained on every feature",
        },
    }
    record["features"] = asdict(checked.choice)
    if checked.choice.features == "pixels":
        record["frozen"].append(f"segmentation.{CONTEXT_WEIGHT} (zeroed: the head reads the raw bands only)")
    return record


@contextmanager
def _progress(show: bool, windows: int, steps: int) -> Iterator[Tick | None]:
    """A rich progress bar with one line for the backbone pass and one for training."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bar = Progress(*columns, console=Console(stderr=True))
    tasks = {name: bar.add_task(name, total=n) for name, n in (("features", windows), ("training", steps))}
    with bar:
        yield lambda task, n: bar.advance(tasks[task], n)
