"""`rsneo.metrics`: torchmetrics counts and scikit-learn scores give the textbook numbers (the formulas the
hand-written code used before), undefined scores are None, and every user of the metrics agrees with them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsneo import baselines
from rsneo.metrics import IGNORE, confusion_matrix, confusion_metric, scores
from rsneo.train.learn_holdout import scores_from_confusion

# Integer counts in, float64 divisions out: scikit-learn and the formulas below differ only in rounding.
TOLERANCE = 1e-12


def textbook(confusion: np.ndarray, c: int) -> dict[str, float]:
    """The definitions, written out: IoU TP / (TP + FP + FN), F1 2TP / (2TP + FP + FN), precision
    TP / (TP + FP), recall TP / (TP + FN); predictions in extra columns are false negatives."""
    tp = confusion[c, c]
    fn = confusion[c].sum() - tp
    fp = confusion[:, c].sum() - tp
    return {"iou": tp / (tp + fp + fn), "f1": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp),
            "recall": tp / (tp + fn)}  # fmt: skip


def textbook_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa of a square matrix: (observed - chance agreement) / (1 - chance agreement)."""
    n = confusion.sum()
    observed = np.trace(confusion) / n
    chance = (confusion.sum(1) * confusion.sum(0)).sum() / n**2
    return (observed - chance) / (1 - chance)


def test_per_class_scores_are_the_textbook_definitions_with_none_of_these_always_wrong():
    rng = np.random.default_rng(0)
    confusion = rng.integers(1, 500, (4, 5))  # 4 reference classes, a 5th column: "none of these"
    measured = scores(confusion, ["a", "b", "c", "d"])
    for c, name in enumerate("abcd"):
        for key, value in textbook(confusion, c).items():
            assert getattr(measured.per_class[name], key) == pytest.approx(value, rel=TOLERANCE)
        assert measured.per_class[name].support == confusion[c].sum()
    assert measured.overall_accuracy == pytest.approx(np.trace(confusion) / confusion.sum(), rel=TOLERANCE)
    square = np.vstack([confusion, np.zeros((1, 5), np.int64)])  # "none of these" is never a reference class
    assert measured.kappa == pytest.approx(textbook_kappa(square), rel=1e-10)
    assert measured.mean_iou == pytest.approx(np.mean([textbook(confusion, c)["iou"] for c in range(4)]))


def test_scores_that_divide_by_zero_are_none():
    # class "b": never in the reference, never predicted; one class in all: kappa undefined
    measured = scores(np.array([[7, 0], [0, 0]]), ["a", "b"])
    assert measured.per_class["b"] == measured.per_class["b"].__class__(None, None, None, None, 0, 0)
    assert measured.per_class["a"].iou == 1.0 and measured.kappa is None
    assert measured.mean_iou == 1.0  # over the classes present in the reference
    # predicted but never in the reference: precision 0, recall undefined
    wrong = scores(np.array([[5, 3], [0, 0]]), ["a", "b"]).per_class["b"]
    assert (wrong.precision, wrong.recall, wrong.iou, wrong.f1) == (0.0, None, 0.0, 0.0)
    empty = scores(np.zeros((2, 3), np.int64), ["a", "b"])
    assert empty.overall_accuracy is None and empty.per_class["a"].iou is None


def test_confusion_matrix_counts_pairs_and_leaves_the_ignore_value_out():
    rng = np.random.default_rng(1)
    reference = rng.integers(-1, 3, (64, 64))
    predicted = rng.integers(0, 4, (64, 64))
    expected = np.zeros((3, 4), np.int64)
    labelled = reference != IGNORE
    np.add.at(expected, (reference[labelled], predicted[labelled]), 1)
    np.testing.assert_array_equal(confusion_matrix(reference, predicted, 3, 4), expected)
    with pytest.raises(ValueError, match=r"predicted values must lie in \[0, 3\)"):
        confusion_matrix(reference, predicted, 3)


def test_the_streaming_metric_of_validation_loops_adds_up_to_the_whole():
    rng = np.random.default_rng(2)
    reference = torch.from_numpy(rng.integers(-1, 2, 1000))
    predicted = torch.from_numpy(rng.integers(0, 2, 1000))
    metric = confusion_metric(2)
    for part in range(0, 1000, 300):  # batch by batch, as a Lightning validation epoch updates it
        metric.update(predicted[part : part + 300], reference[part : part + 300])
    np.testing.assert_array_equal(metric.compute().numpy(), confusion_matrix(reference, predicted, 2))


def test_learn_hold_out_scores_keep_their_definitions_and_none_for_absent_classes():
    confusion = np.array([[50, 3, 2, 1], [4, 30, 6, 0], [0, 0, 0, 0]])  # "c": predicted, not in reference
    held = scores_from_confusion(confusion, ["a", "b", "c"], np.array([3, 2, 0]))
    for c, name in enumerate("ab"):
        expected = textbook(confusion, c)
        assert held[name].iou == pytest.approx(expected["iou"], rel=TOLERANCE)
        assert held[name].f1 == pytest.approx(expected["f1"], rel=TOLERANCE)
    assert (held["c"].iou, held["c"].f1, held["c"].pixels) == (None, None, 0)
    assert (held["a"].pixels, held["a"].features) == (56, 3)


def test_baselines_score_through_the_metrics():
    rng = np.random.default_rng(3)
    predicted = rng.random((40, 40)) > 0.6
    truth = rng.random((40, 40)) > 0.5
    valid = rng.random((40, 40)) > 0.1
    p, t = predicted[valid], truth[valid]
    expected_iou = (p & t).sum() / (p | t).sum()
    assert baselines.iou(predicted, truth, valid) == pytest.approx(expected_iou, rel=TOLERANCE)
    positive, negative = truth & valid, ~truth & valid
    measured = baselines.binary_scores(predicted, positive, negative)
    confusion = np.array([[(~p & ~t).sum(), (p & ~t).sum()], [(~p & t).sum(), (p & t).sum()]])
    assert measured["kappa"] == pytest.approx(textbook_kappa(confusion), rel=1e-10)
    assert measured["f1"] == pytest.approx(textbook(confusion, 1)["f1"], rel=TOLERANCE)
    assert measured["predicted_share"] == pytest.approx(p.mean(), rel=TOLERANCE)
    changed = np.array([1, 1, 0, 0], bool)
    nothing = baselines.binary_scores(np.zeros(4, bool), changed, ~changed)
    assert (nothing["precision"], nothing["f1"], nothing["kappa"]) == (0.0, 0.0, 0.0)
    assert math.isnan(baselines.iou(np.zeros(3, bool), np.zeros(3, bool)))
