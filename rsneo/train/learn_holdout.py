"""Honest scores for `rsneo learn`: whole features held out by spatial blocks, never pixels of one feature on
both sides; the feature choice ("auto") made on inner hold-outs of the training features only; IoU and F1 per
class as `segment` decides ("none of these" counts as wrong).
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


def spatial_holdout(
    centres: np.ndarray, class_ids: np.ndarray, share: float, blocks: int, seed: int
) -> np.ndarray:
    """(features,) bool: whole spatial blocks of features held out, about `share` of each class's features.

    The extent of `centres` (features, 2) is cut into `blocks` x `blocks` squares taken in a random order; a
    square goes to the hold-out while some class still has less than `share` held out and no class would be
    left without a training feature. A class with a single feature is never held out (it gets no score).
    """
    rng = np.random.default_rng(seed)
    lo, hi = centres.min(0), centres.max(0)
    size = np.where(hi > lo, (hi - lo) / blocks, 1.0)
    cell = np.minimum(((centres - lo) / size).astype(int), blocks - 1)
    block = cell[:, 0] * blocks + cell[:, 1]
    n_classes = int(class_ids.max()) + 1
    total = np.bincount(class_ids, minlength=n_classes)
    held = np.zeros(len(centres), bool)
    for b in rng.permutation(np.unique(block)):
        counts = np.bincount(class_ids[held], minlength=n_classes)
        if np.all((counts >= share * total) | (total < 2)):
            break
        take = block == b
        after = counts + np.bincount(class_ids[take], minlength=n_classes)
        if np.any((after >= total) & (total > 0)):
            continue  # would leave a class with nothing to train on
        gain = np.bincount(class_ids[take], minlength=n_classes)
        if not np.any((gain > 0) & (counts < share * total)):
            continue  # adds only classes already held out enough
        held |= take
    return held


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
        inner = spatial_holdout(
            centres[index], feature_classes[index], settings.holdout or 0.25, settings.blocks,
            settings.seed + 1 + r,
        )  # fmt: skip
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


def selection_fits(settings: LearnSettings) -> int:
    """Trainings that `choose_features` runs (for the progress bar)."""
    return 2 * max(settings.select_rounds, 1) if settings.features == "auto" else 0


@dataclass
class ClassScore:
    iou: float | None
    f1: float | None
    pixels: int  # held-out pixels of this class
    features: int  # held-out features of this class


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
        np.add.at(confusion, (w.classes.numpy(), predicted.numpy()), 1)
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
