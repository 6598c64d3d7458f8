"""Scores of a fine-tuned head: torchmetrics (F1, IoU, precision, recall, kappa), and two scores of detail.

The token grid is 32 pixels a side; pooled F1 hardly notices a decoder that rounds every building to blobs of
tokens. `ShapeScores` measures what such a decoder loses: boundary F1 (the share of predicted boundary pixels
within `tolerance` pixels of a reference boundary and vice versa; Csurka et al. 2013) and small-object recall
(the share of reference objects smaller than one token, 32 x 32 pixels, of which at least half is found).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryCohenKappa,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassCohenKappa,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from rsneo.data.labelled import IGNORE

SMALL_OBJECT_PX = 32 * 32  # one token of the model: what the token grid alone cannot draw
BOUNDARY_TOLERANCE_PX = 2


def metric_collection(num_classes: int, binary: bool) -> MetricCollection:
    """F1, IoU, precision, recall and Cohen's kappa: of the change class for `binary` change, macro-averaged
    over the classes otherwise; -1 labels are ignored. Without torchmetrics' argument checks: they look for
    stray values with `torch.unique` on every map, most of a validation's time on a CPU."""
    if binary:
        kinds = (BinaryF1Score, BinaryJaccardIndex, BinaryPrecision, BinaryRecall, BinaryCohenKappa)
        options: dict = {"ignore_index": IGNORE, "validate_args": False}
    else:
        kinds = (MulticlassF1Score, MulticlassJaccardIndex, MulticlassPrecision, MulticlassRecall,
                 MulticlassCohenKappa)  # fmt: skip
        options = {"num_classes": num_classes, "ignore_index": IGNORE, "validate_args": False}
    names = ("f1", "iou", "precision", "recall", "kappa")
    return MetricCollection(
        {
            name: kind(**options) if name == "kappa" or binary else kind(average="macro", **options)
            for name, kind in zip(names, kinds, strict=True)
        }
    )


def per_class_collection(num_classes: int) -> MetricCollection:
    """IoU and F1 of every class (vocabulary.json records them per class name)."""
    options = {"num_classes": num_classes, "ignore_index": IGNORE, "average": None, "validate_args": False}
    return MetricCollection({"iou": MulticlassJaccardIndex(**options), "f1": MulticlassF1Score(**options)})


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's own pixels that touch a pixel outside it (8-neighbourhood)."""
    return mask & ~ndimage.binary_erosion(mask, np.ones((3, 3), bool), border_value=1)


class ShapeScores:
    """Boundary F1 and small-object recall, accumulated over maps of class indices (-1 in the reference: not
    scored); macro-averaged over the classes that occur (for `binary` change: the change class alone)."""

    def __init__(self, num_classes: int, binary: bool, tolerance: int = BOUNDARY_TOLERANCE_PX) -> None:
        self.classes = [1] if binary else list(range(num_classes))
        self.tolerance = tolerance
        # per class: matched predicted boundary, predicted boundary, matched reference boundary, reference
        # boundary, small objects found, small objects
        self.counts = np.zeros((len(self.classes), 6))

    def update(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        known = reference >= 0
        for row, k in enumerate(self.classes):
            pred, truth = (predicted == k) & known, (reference == k) & known
            self.counts[row] += self._boundary_counts(pred, truth, known) + self._small_objects(pred, truth)

    def _boundary_counts(self, pred: np.ndarray, truth: np.ndarray, known: np.ndarray) -> np.ndarray:
        inner = ndimage.binary_erosion(known, np.ones((3, 3), bool), border_value=0)  # not the block's edge
        edge_p, edge_t = boundary(pred) & inner, boundary(truth) & inner
        near_t = (
            ndimage.distance_transform_edt(~edge_t) <= self.tolerance if edge_t.any() else np.zeros_like(pred)
        )
        near_p = (
            ndimage.distance_transform_edt(~edge_p) <= self.tolerance if edge_p.any() else np.zeros_like(pred)
        )
        return np.array([(edge_p & near_t).sum(), edge_p.sum(), (edge_t & near_p).sum(), edge_t.sum(), 0, 0])

    @staticmethod
    def _small_objects(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
        objects, count = ndimage.label(truth, np.ones((3, 3), bool))
        if count == 0:
            return np.zeros(6)
        index = np.arange(1, count + 1)
        area = ndimage.sum_labels(np.ones_like(truth), objects, index)
        found = ndimage.sum_labels(pred, objects, index)
        small = area <= SMALL_OBJECT_PX
        return np.array([0, 0, 0, 0, ((found >= 0.5 * area) & small).sum(), small.sum()])

    def compute(self) -> dict[str, float]:
        """{"boundary_f1", "small_object_recall"} (NaN where nothing of the kind occurs)."""
        c = self.counts
        precision = c[:, 0] / np.maximum(c[:, 1], 1)
        recall = c[:, 2] / np.maximum(c[:, 3], 1)
        f1 = np.where(
            precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0
        )
        present = c[:, 3] > 0
        small = c[:, 5] > 0
        return {
            "boundary_f1": float(f1[present].mean()) if present.any() else float("nan"),
            "small_object_recall": float((c[small, 4] / c[small, 5]).mean()) if small.any() else float("nan"),
        }


def best_cut(logit: Tensor, labels: Tensor) -> float:
    """The change-logit cut with the highest F1 on `labels` (0/1; others ignored), searched over quantiles of
    the logits, so that `rsneo change` decides at the cut validation liked best rather than at P = 0.5."""
    known = (labels == 0) | (labels == 1)
    score, truth = logit[known].float(), labels[known] == 1
    if truth.sum() == 0 or score.numel() < 2:
        return 0.0
    sample = score[torch.randperm(score.numel(), generator=torch.Generator().manual_seed(0))[:200_000]]
    cuts = torch.quantile(sample, torch.linspace(0.01, 0.99, 99)).unique()
    positives = truth.sum().float()
    f1 = torch.stack([2 * ((score > c) & truth).sum() / ((score > c).sum() + positives) for c in cuts])
    return float(cuts[int(f1.argmax())])
