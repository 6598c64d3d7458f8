"""Accuracy of a classification, one definition for all of rsneo: torchmetrics counts, scikit-learn scores.

- Counting: `confusion_metric` is torchmetrics' `MulticlassConfusionMatrix` with rsneo's conventions
  (rows: reference, columns: predicted; reference -1 is not scored). It accumulates batch after batch and
  syncs across ranks, so a Lightning validation loop updates it per step and reads it once per epoch;
  `confusion_matrix` counts whole arrays with it.
- Scoring: `scores` turns a matrix into per-class IoU, F1, precision and recall, overall accuracy and Cohen's
  kappa with scikit-learn's functions, each cell entering as its (reference, predicted) pair weighted by its
  count, so the numbers are scikit-learn's definitions, not a re-derivation.

A matrix may have more predicted columns than reference rows: predictions outside the scored classes
(`rsneo segment`'s "none of these") are always wrong. A score whose denominator is zero (precision of a
class never predicted, recall of a class never in the reference) is None. `rsneo evaluate`, `rsneo assess`,
`rsneo learn`'s hold-out, the baselines, the benchmarks and fine-tuning's validation report these numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from torchmetrics.classification import MulticlassConfusionMatrix

IGNORE = -1  # reference value that is not scored (no label, or the class table's ignore value)


def confusion_metric(columns: int) -> MulticlassConfusionMatrix:
    """A streaming (columns, columns) confusion matrix: `update(predicted, reference)` per batch, reference
    pixels of -1 left out; `compute()` gives reference rows and predicted columns."""
    # imported on use: `rsneo change` reaches this module through the baselines and must start without
    # torchmetrics (it loads the text stack) or scikit-learn (tests/test_startup.py)
    from torchmetrics.classification import MulticlassConfusionMatrix

    return MulticlassConfusionMatrix(columns, ignore_index=IGNORE)


def confusion_matrix(
    reference: np.ndarray | torch.Tensor,
    predicted: np.ndarray | torch.Tensor,
    classes: int,
    columns: int | None = None,
) -> np.ndarray:
    """(classes, columns) int64 counts of (reference, predicted) pairs over pixels whose reference is not -1.

    Reference values lie in [0, classes), predicted ones in [0, columns) (default: `classes`).
    """
    columns = classes if columns is None else columns
    reference = torch.as_tensor(np.asarray(reference)).long().ravel()
    predicted = torch.as_tensor(np.asarray(predicted)).long().ravel()
    if reference.shape != predicted.shape:
        raise ValueError(f"confusion_matrix: {reference.numel()} reference and {predicted.numel()} predicted")
    scored = reference != IGNORE
    for name, values, limit in (("reference", reference[scored], classes), ("predicted", predicted, columns)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= limit):
            raise ValueError(f"confusion_matrix: {name} values must lie in [0, {limit}), got "
                             f"{int(values.min())}..{int(values.max())}")  # fmt: skip
    metric = confusion_metric(columns)
    if scored.any():
        metric.update(predicted[scored], reference[scored])
    return metric.compute().numpy().astype(np.int64)[:classes]


@dataclass(frozen=True)
class ClassScores:
    """Scores of one class; None where the score's denominator is zero."""

    iou: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    support: int  # reference pixels of the class
    predicted: int  # pixels predicted as the class


@dataclass(frozen=True)
class Scores:
    """Every score of one confusion matrix (reference rows `names`, predicted columns)."""

    confusion: np.ndarray  # (classes, columns) int64
    names: tuple[str, ...]
    per_class: dict[str, ClassScores]
    overall_accuracy: float | None
    kappa: float | None

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU over the classes present in the reference."""
        return _mean([s.iou for s in self.per_class.values() if s.support])

    @property
    def mean_f1(self) -> float | None:
        """Mean F1 over the classes present in the reference."""
        return _mean([s.f1 for s in self.per_class.values() if s.support])

    def to_json(self) -> dict:
        """Plain types for a JSON document (None for undefined scores)."""
        return {
            "confusion": self.confusion.tolist(),
            "overall_accuracy": self.overall_accuracy,
            "kappa": self.kappa,
            "mean_iou": self.mean_iou,
            "mean_f1": self.mean_f1,
            "per_class": {name: vars(s) for name, s in self.per_class.items()},
        }


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def scores(confusion: np.ndarray, names: Sequence[str]) -> Scores:
    """Scores of a (classes, columns >= classes) reference x predicted count matrix, by scikit-learn."""
    from sklearn.exceptions import UndefinedMetricWarning  # on use, as torchmetrics above
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        jaccard_score,
        precision_recall_fscore_support,
    )

    confusion = np.asarray(confusion, dtype=np.int64)
    names = tuple(names)
    k, columns = confusion.shape
    if k != len(names) or columns < k or len(set(names)) != k:
        raise ValueError(f"scores: a ({len(names)}, >= {len(names)}) matrix for distinct names {names}, "
                         f"got {confusion.shape}")  # fmt: skip
    support, predicted = confusion.sum(1), confusion[:, :k].sum(0)
    rows, cols = np.nonzero(confusion)
    if not rows.size:  # nothing scored
        empty = ClassScores(None, None, None, None, 0, 0)
        return Scores(confusion, names, {n: empty for n in names}, None, None)
    weight = confusion[rows, cols].astype(np.float64)
    labels = list(range(k))
    precision, recall, f1, _ = precision_recall_fscore_support(
        rows, cols, labels=labels, sample_weight=weight, zero_division=np.nan
    )
    iou = jaccard_score(rows, cols, labels=labels, average=None, sample_weight=weight, zero_division=0)
    iou = np.where(support + predicted > 0, iou, np.nan)  # jaccard_score cannot say "undefined" itself
    per_class = {
        name: ClassScores(
            _defined(iou[c]),
            _defined(f1[c]),
            _defined(precision[c]),
            _defined(recall[c]),
            int(support[c]),
            int(predicted[c]),
        )  # fmt: skip
        for c, name in enumerate(names)
    }
    accuracy = accuracy_score(rows, cols, sample_weight=weight)
    with warnings.catch_warnings():  # one class in all: kappa is undefined (None), nothing to warn about
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(rows, cols, labels=list(range(columns)), sample_weight=weight)
    return Scores(confusion, names, per_class, float(accuracy), _defined(kappa))
