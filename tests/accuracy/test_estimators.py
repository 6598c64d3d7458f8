"""`rsneo.accuracy.estimators` against the worked example of Olofsson et al. (2014), section 5, and against a
population whose truth is known (the 95% intervals cover the true area about 95% of the time)."""

from __future__ import annotations

import numpy as np
import pytest

from rsneo.accuracy.estimators import stratified_estimates

# Olofsson, Foody, Herold, Stehman, Woodcock, Wulder (2014), Remote Sensing of Environment 148: 42-57,
# section 5 (numerical example), Table 8: sample counts of a stratified random sample, rows map classes,
# columns reference classes; mapped areas in 30 m pixels (0.09 ha each).
CLASSES = ("deforestation", "forest gain", "stable forest", "stable non-forest")
COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAPPED_HA = np.array([200_000, 150_000, 3_200_000, 6_450_000]) * 0.09

# The paper's published results (section 5, p. 54), rounded as printed there.
PAPER_AREA_HA = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]
PAPER_USERS = [(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)]
PAPER_PRODUCERS = [0.75, 0.85, 0.93, 0.96]
PAPER_OVERALL = (0.95, 0.02)
PAPER_TABLE9_COLUMN_TOTALS = [0.0235, 0.0130, 0.3175, 0.6460]  # estimated area proportions


@pytest.fixture(scope="module")
def example():
    return stratified_estimates(COUNTS, MAPPED_HA, CLASSES)


def test_area_estimates_and_intervals_are_the_papers(example):
    """Printed to the hectare. Tolerance 2 ha: the paper rounds intermediate values (the largest difference,
    stable non-forest's interval, 16,281.7 here against 16,282 printed)."""
    for (area, ci), estimate in zip(PAPER_AREA_HA, example.area, strict=True):
        assert estimate.value == pytest.approx(area, abs=2)
        assert estimate.ci95 == pytest.approx(ci, abs=2)
    assert sum(e.value for e in example.area) == pytest.approx(MAPPED_HA.sum(), rel=1e-12)


def test_accuracies_and_intervals_are_the_papers(example):
    """Printed to two decimals: half a unit of the last digit."""
    for (value, ci), estimate in zip(PAPER_USERS, example.users, strict=True):
        assert estimate.value == pytest.approx(value, abs=0.005)
        assert estimate.ci95 == pytest.approx(ci, abs=0.005)
    for value, estimate in zip(PAPER_PRODUCERS, example.producers, strict=True):
        assert estimate.value == pytest.approx(value, abs=0.005)
    # producer's intervals, eq. 7: deforestation and stable forest as printed (0.21, 0.03); the paper's
    # printed forest gain and stable non-forest intervals do not follow from its eq. 7, whose values are
    assert [round(e.ci95, 3) for e in example.producers] == [0.213, 0.254, 0.034, 0.018]
    assert example.overall.value == pytest.approx(PAPER_OVERALL[0], abs=0.005)
    assert example.overall.ci95 == pytest.approx(PAPER_OVERALL[1], abs=0.005)


def test_area_weighted_matrix_is_table_9(example):
    np.testing.assert_allclose(example.proportions.sum(0), PAPER_TABLE9_COLUMN_TOTALS, atol=5e-5)
    # p_ij = W_i n_ij / n_i. (eq. 4): deforestation row, W = 0.02, n = 75
    np.testing.assert_allclose(example.proportions[0], 0.02 * COUNTS[0] / 75, rtol=1e-12)
    assert example.proportions.sum() == pytest.approx(1.0, rel=1e-12)


def test_a_class_without_sample_is_left_out_and_one_sample_has_no_interval():
    result = stratified_estimates([[1, 0, 0], [0, 30, 2], [0, 0, 0]], [100.0, 900.0, 50.0], ["a", "b", "c"])
    assert result.unsampled == ("c",)
    assert sum(e.value for e in result.area) == pytest.approx(1000.0)  # the population without "c"
    assert result.users[2].value is None
    assert result.users[0] == result.users[0].__class__(1.0, None)  # one sample: no variance
    assert result.overall.ci95 is None and result.area[1].ci95 is None
    assert result.users[1].ci95 is not None  # a stratum of 32 samples has its own interval


def test_standard_errors_match_the_spread_of_estimates_over_repeated_samples():
    """A synthetic map of 3 classes and its truth (15% of pixels wrong): 400 stratified random samples of 100
    per class. The estimator is unbiased and its standard error (interval / 1.96) is the spread of the
    estimates across samples; the intervals cover the true area near 95% of the time. Bounds: with 400
    draws the spread is known to about 3.5% and coverage to about 1.1 points (binomial)."""
    rng = np.random.default_rng(0)
    mapped = rng.choice(3, 200_000, p=[0.1, 0.3, 0.6])
    truth = np.where(rng.random(mapped.size) < 0.15, rng.choice(3, mapped.size), mapped)
    true_area = np.bincount(truth, minlength=3).astype(float)
    strata = [np.flatnonzero(mapped == c) for c in range(3)]
    estimates, errors = [], []
    for _ in range(400):
        counts = np.zeros((3, 3), np.int64)
        for c, members in enumerate(strata):
            np.add.at(counts, (c, truth[rng.choice(members, 100, replace=False)]), 1)
        result = stratified_estimates(counts, [len(s) for s in strata], ["a", "b", "c"])
        estimates.append([e.value for e in result.area])
        errors.append([e.ci95 / 1.96 for e in result.area])
    estimates, errors = np.array(estimates), np.array(errors)
    spread = estimates.std(0)
    np.testing.assert_array_less(np.abs(estimates.mean(0) - true_area), 4 * spread / np.sqrt(400))
    np.testing.assert_allclose(errors.mean(0) / spread, 1.0, atol=0.12)
    coverage = (np.abs(estimates - true_area) <= 1.96 * errors).mean(0)
    assert ((coverage >= 0.91) & (coverage <= 0.985)).all(), coverage
