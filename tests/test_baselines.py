"""Training-free baselines against hand-computed references: MNDWI, Otsu, CVA, IoU, kappa."""

from __future__ import annotations

import math

import numpy as np

from rsneo.baselines import binary_scores, cva_otsu, iou, mndwi, otsu_threshold, standardise_bands


def test_mndwi_values_and_zero_where_both_bands_are_zero():
    green = np.array([0.3, 0.1, 0.0, 0.2])
    swir = np.array([0.1, 0.3, 0.0, 0.2])
    np.testing.assert_allclose(mndwi(green, swir), [0.5, -0.5, 0.0, 0.0], rtol=0, atol=1e-12)


def test_otsu_cuts_two_equal_modes_at_their_midpoint_and_ignores_non_finite_values():
    """Two equal-weight, equal-variance normals: by symmetry the cut is the midpoint of the means (1.5);
    0.1 allows a bin width (~0.05 over this range) plus the sampling error of the means (~0.01)."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 1.0, 20000), rng.normal(3.0, 1.0, 20000)])
    cut = otsu_threshold(values)
    assert abs(cut - 1.5) < 0.1
    assert otsu_threshold(np.concatenate([values, [np.nan, np.inf, -np.inf]])) == cut


def test_cva_otsu_finds_the_changed_block_whatever_each_date_s_offset():
    rng = np.random.default_rng(1)
    before = rng.normal(0, 1.0, (3, 32, 32))  # a textured scene
    after = before + 5.0 + rng.normal(0, 0.01, before.shape)  # an offset of the whole date is no change
    after[:, 8:16, 8:16] += 4.0
    truth = np.zeros((32, 32), bool)
    truth[8:16, 8:16] = True
    assert iou(cva_otsu(before, after), truth) == 1.0
    np.testing.assert_allclose(standardise_bands(after).mean(axis=(1, 2)), 0, atol=1e-12)


def test_iou_over_valid_pixels_and_nan_without_union():
    predicted = np.array([True, True, False, False])
    truth = np.array([True, False, True, False])
    assert iou(predicted, truth) == 1 / 3
    assert iou(predicted, truth, valid=np.array([True, True, False, True])) == 0.5
    assert math.isnan(iou(np.zeros(3, bool), np.zeros(3, bool)))


def test_binary_scores_match_a_hand_computed_confusion_matrix():
    # reference: 4 changed pixels (3 found), 6 unchanged (1 false alarm); pixel 10 is outside the reference
    predicted = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1], bool)
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    negative = ~positive
    negative[10] = False
    scores = binary_scores(predicted, positive, negative)
    accuracy = 8 / 10
    expected = (4 * 4 + 6 * 6) / 100  # chance agreement: (tp+fn)(tp+fp) + (tn+fp)(tn+fn), over n^2
    assert math.isclose(scores["accuracy"], accuracy)
    assert math.isclose(scores["kappa"], (accuracy - expected) / (1 - expected))
    assert math.isclose(scores["precision"], 3 / 4) and math.isclose(scores["recall"], 3 / 4)
    assert math.isclose(scores["f1"], 3 / 4)
