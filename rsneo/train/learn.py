"""`rsneo learn`: new classes from a few polygons or points, trained on top of a frozen backbone.

Why this is fast on a CPU: the backbone runs once per labelled window (its hidden states are cached,
`learn_pixels`), then only the segmentation head trains (`learn_fit`): its light decoder (backbone features +
a per-pixel stem over the raw normalised bands) and one class vector per new class, initialised from the class
name's prompt encoding. The learnt vectors are stored beside the heads (`rsneo.heads.fewshot`), so `segment
--classes <names>` gives exactly the classes trained here (`learn_folder`).

What the head reads (`LearnSettings.features`): the backbone context and the raw bands ("all"), or the raw
bands only ("pixels": the context projection zeroed, for imagery the backbone never learnt, where its context
misleads a few labels); "auto" picks one by inner spatial hold-outs of the training features.

Honest scores (`learn_holdout`): whole features (polygons, points) are held out by spatial blocks, never
pixels of one feature on both sides; the head is trained without them, scored on them (IoU, F1 per class,
with "none of these" counted as wrong, as `segment` would decide), then by default trained again on every
feature for the model that is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rsneo.errors import InputError
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
    choose_features,
    feature_centres,
    holdout_scores,
    mean_score,
    selection_fits,
    spatial_holdout,
)
from rsneo.train.learn_pixels import Tick, count_windows, labelled_windows, prepare_rasters


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
    if not 0.0 <= settings.holdout < 1.0:
        raise InputError(f"--holdout: expected a share in [0, 1), got {settings.holdout}")
    if settings.features not in FEATURES:
        raise InputError(f"--features: expected one of {', '.join(FEATURES)}, got {settings.features!r}")


def learn(system: System, config: LearnConfig, show_progress: bool = False) -> LearnResult:
    """Learn the classes of `config.class_field` in `config.labels` on `config.rasters`; write the model
    folder `config.out`."""
    settings = config.settings
    check_settings(settings, system.config.token_size)
    out = Path(config.out)
    check_destination(out, config.overwrite)
    labels = read_labels(Path(config.labels), config.class_field)
    bands = list(config.bands) if config.bands is not None else None
    prepared = prepare_rasters(config.rasters, labels, config.sensor, bands)
    held = np.zeros(len(labels.class_ids), bool)
    if settings.holdout > 0:
        held = spatial_holdout(
            feature_centres(labels), labels.class_ids, settings.holdout, settings.blocks, settings.seed
        )
    refit = bool(settings.holdout > 0 and held.any() and settings.refit)
    total_windows = count_windows(prepared, settings.window)
    total_steps = (1 + refit + selection_fits(settings)) * settings.steps
    with _progress(show_progress, total_windows, total_steps) as tick:
        windows = labelled_windows(system, prepared, settings.window, tick)
        head, vectors, choice, scores = _fit_and_score(system, labels, windows, held, settings, refit, tick)
    record = learn_record(
        system, prepared, labels, settings, held, scores, [len(windows), total_windows], refit
    )
    record["features"] = asdict(choice)
    if choice.features == "pixels":
        record["frozen"].append(f"segmentation.{CONTEXT_WEIGHT} (zeroed: the head reads the raw bands only)")
    names = labels.classes
    record["base_classes"] = base_classes_kept(system, head, windows, names)
    learnt = with_base_learnt(system, LearntClasses(list(names), vectors), record["base_classes"]["kept"])
    write_model_folder(system, head, learnt, record, out, config.overwrite)
    return LearnResult(out, list(names), scores, record)


def _fit_and_score(system, labels, windows, held: np.ndarray, settings: LearnSettings, refit: bool, tick):
    """Choose what the head reads and train it without the hold-out, score it there, and (`refit`) train
    it again on every feature. Returns (head, class vectors, choice, scores)."""
    names, feature_classes = labels.classes, labels.class_ids
    with torch.no_grad():
        init = encode_class_prompts(system.model, system.tokenizer, names, system.segmentation.config)
    init = init.float().cpu()
    train_use = torch.from_numpy(~held)
    # chosen without the scored hold-out, then kept for the final fit on every feature
    choice = choose_features(
        system.segmentation,
        init,
        windows,
        train_use,
        feature_centres(labels),
        feature_classes,
        settings,
        tick,
    )
    chosen = replace(settings, features=choice.features)
    head, vectors = fit_head(system.segmentation, init, windows, train_use, chosen, tick)
    scores = holdout_scores(head, vectors, windows, torch.from_numpy(held), names, feature_classes)
    if refit:
        everything = torch.ones(len(feature_classes), dtype=torch.bool)
        head, vectors = fit_head(system.segmentation, init, windows, everything, chosen, tick)
    return head, vectors, choice, scores


def learn_record(system, prepared, labels, settings, held, scores, windows, refit) -> dict:
    """What learn.json says: the classes, where they came from, how they were trained and scored."""
    ids = labels.class_ids
    on_raster = set()
    for r in prepared:
        on_raster |= set(np.unique(r.feature[r.feature >= 0]).tolist())
    seen = np.zeros(len(ids), bool)
    seen[list(on_raster)] = True
    counts = {
        name: {
            "features": int((ids == k).sum()),
            "on_rasters": int(((ids == k) & seen).sum()),
            "held_out": int(((ids == k) & held & seen).sum()),
            "pixels": int(sum(int((r.classes == k).sum()) for r in prepared)),
        }
        for k, name in enumerate(labels.classes)
    }
    return {
        "learnt_classes": list(labels.classes),
        "labels": str(Path(labels.path).resolve()),
        "class_field": labels.field,
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
            "method": f"whole features held out by spatial blocks ({settings.blocks}x{settings.blocks} over "
            f"the labels' extent), about {settings.holdout:.0%} of each class",
            "scores": {name: asdict(s) for name, s in scores.items()},
            "mean_iou": mean_score(scores, "iou"),
            "mean_f1": mean_score(scores, "f1"),
            "written_model": "trained again on every feature" if refit else "trained without the hold-out",
        },
    }


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
