"""Honest scores for `rsneo learn`: spatial k-fold over whole features (polygons, points), never pixels of one
feature on both sides, folds balanced per class and their blocks refined when labels cluster; the feature
choice ("auto") made on inner hold-outs of each fold's training features only; IoU and F1 per class as
`segment` decides ("none of these" counts as wrong); a warning for every class scored from fewer than 3
features on either side.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo import metrics
from rsneo.heads.segmentation import SegmentationHead
from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_fit import fit_head, pixel_logits, pixel_weights
from rsneo.train.learn_pixels import LabelledPixels, Tick

MIN_SIDE = 3  # features of a class on each side of a split below which its score is flagged
MAX_BLOCKS = 256  # the finest cut of the labels' extent tried for the folds


@dataclass
class Folds:
    """Which fold holds out each feature (-1: never held out, a class with a single feature) and the cut of
    the labels' extent into blocks x blocks squares that made them."""

    fold: np.ndarray  # (features,) int64
    blocks: int
    count: int  # folds


def spatial_folds(
    centres: np.ndarray, class_ids: np.ndarray, folds: int, blocks: int, seed: int, minimum: int = MIN_SIDE
) -> Folds:
    """Spatial k-fold: the labels' extent is cut into `blocks` x `blocks` squares and whole squares go to
    `folds` folds, balancing every class across the folds (each square to the fold where its classes are
    fewest so far, the fullest squares first, ties in a `seed`ed random order).

    When a class's features cluster in a few squares, one fold would take most of them and its head would
    train on the rest alone (21 of 22 polygons held out, once): the cut is then refined (2x, 4x, ... up to
    `MAX_BLOCKS`) until no fold holds more than twice its share of any class, or `minimum` features of it
    are left to train on. A class with a single feature is never held out.
    """
    n_classes = int(class_ids.max()) + 1
    total = np.bincount(class_ids, minlength=n_classes)
    lo, hi = centres.min(0), centres.max(0)
    size = np.where(hi > lo, hi - lo, 1.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(centres))
    b = max(int(blocks), 1)
    while True:
        cell = np.minimum(((centres - lo) / size * b).astype(int), b - 1)
        fold = _assign(cell[:, 0] * b + cell[:, 1], class_ids, total, folds, order)
        held = np.stack([np.bincount(class_ids[fold == f], minlength=n_classes) for f in range(folds)])
        fair = np.ceil(2 * total / folds)
        ok = (held <= np.maximum(fair, 1)) | (total - held >= minimum)
        if ok.all() or b >= MAX_BLOCKS or len(np.unique(cell, axis=0)) == len(centres):
            return Folds(fold, b, folds)
        b *= 2


def _assign(
    block: np.ndarray, class_ids: np.ndarray, total: np.ndarray, folds: int, order: np.ndarray
) -> np.ndarray:
    """(features,) fold of each feature: whole blocks, fullest first, each to the fold where the classes it
    holds have the smallest share held out so far; single-feature classes stay out (-1)."""
    n_classes = len(total)
    held = np.zeros((folds, n_classes))
    fold = np.full(len(block), -1, np.int64)
    cells = {}
    for i in order:  # a seeded order: ties among equally full blocks are broken at random
        cells.setdefault(int(block[i]), []).append(i)
    for members in sorted(cells.values(), key=len, reverse=True):
        members = np.array([i for i in members if total[class_ids[i]] > 1])
        if not len(members):
            continue
        counts = np.bincount(class_ids[members], minlength=n_classes)
        load = ((held + counts) / np.maximum(total, 1))[:, counts > 0].max(1)
        best = int(np.lexsort((held.sum(1), load))[0])
        held[best] += counts
        fold[members] = best
    return fold


def feature_centres(labels) -> np.ndarray:
    """(features, 2) centre of each feature (representative point) in the label file's coordinates."""
    points = labels.frame.geometry.representative_point()
    return np.stack([points.x.to_numpy(), points.y.to_numpy()], axis=1)


@dataclass
class Choice:
    """What the head reads ("all" or "pixels") and, for "auto", the inner hold-out loss of each."""

    features: str
    inner_loss: dict[str, float] = field(default_factory=dict)
    inner_features: int = 0  # training features held out, summed over the inner splits


def choose_features(
    head: SegmentationHead,
    init_vectors: Tensor,
    windows: Sequence[LabelledPixels],
    use: Tensor,
    centres: np.ndarray,
    feature_classes: np.ndarray,
    settings: LearnSettings,
    tick: Tick | None = None,
) -> Choice:
    """`settings.features`, or for "auto" the better of "all" and "pixels" on inner spatial hold-outs of the
    features in `use` (whole blocks of the training features, `select_rounds` splits of other seeds): the
    features of the scored hold-out are never seen. "Better" is the lower held-out cross-entropy, weighted as
    in training (every class, and every feature within it, weighs the same; "none of these" counts as
    wrong): unlike IoU over a few held-out points it rarely ties, and it also tells how sure a right answer
    is. Ties go to "all"."""
    if settings.features != "auto":
        return Choice(settings.features)
    index = np.flatnonzero(use.numpy())
    k = int(feature_classes.max()) + 1
    loss = {"all": 0.0, "pixels": 0.0}
    held_total = 0
    for r in range(max(settings.select_rounds, 1)):
        split = spatial_folds(
            centres[index], feature_classes[index], max(settings.folds, 2), settings.blocks,
            settings.seed + 1 + r,
        )  # fmt: skip
        inner = split.fold == r % split.count
        if not inner.any():
            continue
        held_total += int(inner.sum())
        train = torch.zeros(len(use), dtype=torch.bool)
        train[index[~inner]] = True
        check = torch.zeros(len(use), dtype=torch.bool)
        check[index[inner]] = True
        for mode in loss:
            trial = replace(settings, features=mode, seed=settings.seed + 1 + r)
            fitted, vectors = fit_head(head, init_vectors, windows, train, trial, tick)
            loss[mode] += holdout_loss(fitted, vectors, windows, check, k)
    if held_total == 0:
        return Choice("all")
    best = "pixels" if loss["pixels"] < loss["all"] else "all"
    return Choice(best, {m: round(v, 5) for m, v in loss.items()}, held_total)


def held_out_logits(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor
) -> Iterator[tuple[LabelledPixels, Tensor]]:
    """Each window's pixels of the features in `use` with their class logits (K, n), without gradients."""
    for w in windows:
        keep = use[w.feature]
        if keep.any():
            w = w.subset(keep)
            with torch.no_grad():  # not around the yield: grad mode would stay off in the caller's code
                logits = pixel_logits(head, w, vectors)
            yield w, logits


@torch.no_grad()
def holdout_loss(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor, k: int
) -> float:
    """Cross-entropy (with segment's "none of these" logit) over the pixels of the features in `use`, every
    class and every feature within it weighing the same (`pixel_weights`, as in training)."""
    weights = pixel_weights(windows, use, k)
    total = 0.0
    for w, logits in held_out_logits(head, vectors, windows, use):
        none = (head.scale * head.config.none_threshold).expand_as(logits[:1])
        ce = F.cross_entropy(torch.cat([logits, none]).T, w.classes, reduction="none")
        total += float((ce * weights[w.feature]).sum())
    return total


@dataclass
class CrossValidation:
    """A spatial k-fold score: per class over every fold, what the written head reads (the inner hold-out
    losses summed over the folds) and the warnings on classes scored from too few features."""

    scores: dict[str, ClassScore]
    choice: Choice
    folds: Folds | None  # None: not scored (--folds 0)
    warnings: list[str] = field(default_factory=list)


def cross_validate(
    head: SegmentationHead,
    init_vectors: Tensor,
    windows: Sequence[LabelledPixels],
    centres: np.ndarray,
    feature_classes: np.ndarray,
    names: Sequence[str],
    settings: LearnSettings,
    tick: Tick | None = None,
) -> CrossValidation:
    """Score the head by spatial k-fold (`spatial_folds`): for each fold, what it reads is chosen on inner
    hold-outs of the other folds' features (`choose_features`), it trains on them and is scored on the
    fold's features; the confusion of every fold is summed, so each feature is scored once, by a head that
    never saw it. The written head reads what the inner hold-outs of all folds together chose."""
    folds = spatial_folds(centres, feature_classes, settings.folds, settings.blocks, settings.seed)
    k = len(names)
    confusion = np.zeros((k, k + 1), np.int64)
    inner, inner_features = {"all": 0.0, "pixels": 0.0}, 0
    trained_on = np.full(k, np.iinfo(np.int64).max)
    for f in range(folds.count):
        held = folds.fold == f
        if not held.any():
            continue
        train = torch.from_numpy(~held)
        choice = choose_features(head, init_vectors, windows, train, centres, feature_classes, settings, tick)
        chosen = replace(settings, features=choice.features)
        fitted, vectors = fit_head(head, init_vectors, windows, train, chosen, tick)
        confusion += holdout_confusion(fitted, vectors, windows, torch.from_numpy(held), k)
        for mode, value in choice.inner_loss.items():
            inner[mode] += value
        inner_features += choice.inner_features
        scored_here = np.bincount(feature_classes[held], minlength=k) > 0
        left = np.bincount(feature_classes[~held], minlength=k)
        trained_on[scored_here] = np.minimum(trained_on[scored_here], left[scored_here])
    scored = np.bincount(feature_classes[folds.fold >= 0], minlength=k)
    scores = scores_from_confusion(confusion, names, scored)
    for c, name in enumerate(names):
        scores[name].trained_on = int(trained_on[c]) if scored[c] else None
    if settings.features != "auto":
        final = Choice(settings.features)
    elif inner_features:
        final = Choice("pixels" if inner["pixels"] < inner["all"] else "all",
                       {m: round(v, 5) for m, v in inner.items()}, inner_features)  # fmt: skip
    else:
        final = Choice("all")
    return CrossValidation(scores, final, folds, thin_scores(scores))


def thin_scores(scores: dict[str, ClassScore], minimum: int = MIN_SIDE) -> list[str]:
    """One sentence per class scored from fewer than `minimum` features, or by a head trained on fewer."""
    out = []
    for name, score in scores.items():
        if not score.features:
            out.append(f'class "{name}" has no feature that could be held out (a single feature): no score')
        elif score.features < minimum or (score.trained_on or 0) < minimum:
            out.append(
                f'class "{name}": {score.features} held-out feature{"s" * (score.features != 1)} scored by '
                f"heads trained on as few as {score.trained_on} of its features (fewer than {minimum} on one "
                f"side): its score is unreliable; draw more {name} features, spread over the area"
            )
    return out


def selection_fits(settings: LearnSettings) -> int:
    """Trainings that one `choose_features` runs (for the progress bar)."""
    return 2 * max(settings.select_rounds, 1) if settings.features == "auto" else 0


@dataclass
class ClassScore:
    iou: float | None
    f1: float | None
    pixels: int  # held-out pixels of this class
    features: int  # held-out features of this class
    trained_on: int | None = None  # the fewest of its features a head that scored it was trained on


def holdout_scores(
    head: SegmentationHead,
    vectors: Tensor,
    windows: Sequence[LabelledPixels],
    use: Tensor,
    names: Sequence[str],
    feature_classes: np.ndarray,
) -> dict[str, ClassScore]:
    """IoU and F1 per class over the pixels of the features in `use`, decided as `segment` decides
    ("none of these" counts as wrong); None where a class has no such pixel."""
    k = len(names)
    confusion = holdout_confusion(head, vectors, windows, use, k)
    held = np.bincount(feature_classes[use.numpy()], minlength=k)
    return scores_from_confusion(confusion, names, held)


def holdout_confusion(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor, k: int
) -> np.ndarray:
    """(k, k + 1) reference x predicted pixel counts over the features in `use` (last column: none of
    these, as `segment` decides)."""
    confusion = np.zeros((k, k + 1), np.int64)
    for w, logits in held_out_logits(head, vectors, windows, use):
        predicted = head.probabilities(logits[None, :, :, None])[0, :, :, 0].argmax(0)
        confusion += metrics.confusion_matrix(w.classes, predicted, k, k + 1)
    return confusion


def scores_from_confusion(
    confusion: np.ndarray, names: Sequence[str], features: np.ndarray | None = None
) -> dict[str, ClassScore]:
    """Per-class IoU and F1 (`rsneo.metrics`) from a reference x predicted table; None where a class has no
    reference pixel."""
    measured = metrics.scores(confusion, names).per_class
    out = {}
    for c, name in enumerate(names):
        s = measured[name]
        held = s.support > 0
        features_c = int(features[c]) if features is not None else 0
        out[name] = ClassScore(s.iou if held else None, s.f1 if held else None, s.support, features_c)
    return out


def mean_score(scores: dict[str, ClassScore], key: str) -> float | None:
    values = [getattr(s, key) for s in scores.values() if getattr(s, key) is not None]
    return float(np.mean(values)) if values else None
