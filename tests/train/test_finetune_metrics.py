"""Scores of fine-tuned heads (rsneo.train.finetune_metrics) against direct computations."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score

from rsneo.train.finetune_metrics import (
    ShapeScores,
    best_cut,
    boundary,
    metric_collection,
    per_class_collection,
)


def maps(seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, (40, 40))
    predicted = np.where(rng.random((40, 40)) < 0.8, truth, rng.integers(0, classes, (40, 40)))
    truth[:5] = -1  # unlabelled rows: not scored
    return predicted, truth


def test_binary_scores_are_those_of_the_change_class_on_labelled_pixels():
    predicted, truth = maps()
    metrics = metric_collection(2, binary=True)
    metrics.update(torch.from_numpy(predicted), torch.from_numpy(truth))
    scores = {k: float(v) for k, v in metrics.compute().items()}
    known = truth >= 0
    p, t = predicted[known], truth[known]
    assert abs(scores["f1"] - f1_score(t, p)) < 1e-6
    assert abs(scores["iou"] - jaccard_score(t, p)) < 1e-6
    assert abs(scores["kappa"] - cohen_kappa_score(t, p)) < 1e-6


def test_multiclass_scores_are_macro_averages_and_per_class_scores_are_each_class():
    predicted, truth = maps(1, classes=3)
    macro, per_class = metric_collection(3, binary=False), per_class_collection(3)
    for m in (macro, per_class):
        m.update(torch.from_numpy(predicted), torch.from_numpy(truth))
    known = truth >= 0
    p, t = predicted[known], truth[known]
    assert abs(float(macro.compute()["f1"]) - f1_score(t, p, average="macro")) < 1e-6
    assert np.allclose(per_class.compute()["iou"].numpy(), jaccard_score(t, p, average=None), atol=1e-6)


def square(size: int = 40, top: int = 10, left: int = 10, side: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.int64)
    mask[top : top + side, left : left + side] = 1
    return mask


def test_boundary_f1_forgives_a_shift_within_the_tolerance_only():
    reference = square()
    for shift, expected in ((0, 1.0), (1, 1.0), (2, 1.0)):
        scores = ShapeScores(2, binary=True)
        scores.update(square(left=10 + shift), reference)
        assert abs(scores.compute()["boundary_f1"] - expected) < 1e-9
    far = ShapeScores(2, binary=True)
    far.update(square(left=16), reference)  # 6 px off: only the rows' parts within 2 px still match
    assert far.compute()["boundary_f1"] < 0.6


def test_boundary_f1_against_a_brute_force_count():
    rng = np.random.default_rng(3)
    reference = np.zeros((30, 30), np.int64)
    predicted = np.zeros((30, 30), np.int64)
    reference[5:20, 6:18], predicted[7:22, 4:15] = 1, 1
    predicted[rng.random((30, 30)) < 0.02] = 1
    scores = ShapeScores(2, binary=True, tolerance=2)
    scores.update(predicted, reference)
    inner = np.zeros((30, 30), bool)
    inner[1:-1, 1:-1] = True
    ep, et = boundary(predicted == 1) & inner, boundary(reference == 1) & inner
    pts_p, pts_t = np.argwhere(ep), np.argwhere(et)
    near = lambda a, b: np.array([np.sqrt(((b - x) ** 2).sum(1)).min() <= 2 for x in a])
    precision, recall = near(pts_p, pts_t).mean(), near(pts_t, pts_p).mean()
    assert abs(scores.compute()["boundary_f1"] - 2 * precision * recall / (precision + recall)) < 1e-9


def test_small_object_recall_counts_objects_below_one_token_found_by_half():
    reference = np.zeros((100, 100), np.int64)
    reference[5:10, 5:10] = 1  # small, found
    reference[20:26, 20:26] = 1  # small, a third found: missed
    reference[40:90, 40:90] = 1  # larger than a token: not counted
    predicted = np.zeros_like(reference)
    predicted[5:10, 5:10] = 1
    predicted[20:22, 20:26] = 1
    scores = ShapeScores(2, binary=True)
    scores.update(predicted, reference)
    assert scores.compute()["small_object_recall"] == 0.5


def test_the_best_cut_scores_at_least_the_plain_one():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 2, 5000))
    logit = labels.float() * 1.5 + 1.0 + torch.from_numpy(rng.normal(size=5000)).float()  # biased upward
    cut = best_cut(logit, labels)

    def f1(c: float) -> float:
        p, t = logit > c, labels == 1
        return float(2 * (p & t).sum() / (p.sum() + t.sum()))

    assert cut > 0.5 and f1(cut) > f1(0.0)
