"""Good-practice estimators of a map's accuracy and class areas from a reference sample (Olofsson et al.
2014, "Good practices for estimating area and assessing accuracy of land change", Remote Sensing of
Environment 148: 42-57, section 4 and the worked example of section 5).

The sample is read as a stratified random sample with the map classes as strata (simple random sampling is
the special case of proportional allocation). With `n` the (map x reference) sample counts, `A_i` the mapped
area of class i and `W_i = A_i / A` its share:

- area-weighted error matrix `p_ij = W_i n_ij / n_i.` (eq. 4); overall accuracy `sum_j p_jj` (eq. 1),
  user's accuracy `p_ii / p_i.` (eq. 2), producer's accuracy `p_jj / p_.j` (eq. 3);
- their variances: eq. 5 (overall), eq. 6 (user's), eq. 7 (producer's);
- the error-adjusted area of class j: `A * p_.j` (eq. 9-10), standard error from eq. 10-11.

95% confidence intervals are +-1.96 standard errors, as in the paper. A stratum (map class) with no sample
cannot be estimated: it is left out of the population and named in `unsampled`. A stratum with a single
sample has no variance: intervals that depend on it are None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.96  # normal quantile of a two-sided 95% interval, the value Olofsson et al. use


@dataclass(frozen=True)
class Estimate:
    """A value and the half-width of its 95% confidence interval (None where it cannot be estimated)."""

    value: float | None
    ci95: float | None

    def to_json(self) -> dict:
        return {"estimate": self.value, "ci95": self.ci95}


@dataclass(frozen=True)
class AreaEstimates:
    """What a map's user reports: accuracies and error-adjusted class areas, each with its 95% interval."""

    classes: tuple[str, ...]
    counts: np.ndarray  # (k, k) sample counts, rows map classes, columns reference classes
    mapped_area: np.ndarray  # (k,) area of each map class (ha, or pixels without a CRS)
    proportions: np.ndarray  # (k, k) area-weighted error matrix p_ij (sampled strata sum to 1)
    overall: Estimate
    users: tuple[Estimate, ...]
    producers: tuple[Estimate, ...]
    area: tuple[Estimate, ...]  # error-adjusted area of each reference class, in the unit of mapped_area
    area_share: tuple[Estimate, ...]  # the same as a share of the assessed area
    unsampled: tuple[str, ...]  # map classes without a sample: left out of the population


def _defined(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _estimate(value: float, variance: float, z: float, scale: float = 1.0) -> Estimate:
    """`value` +- z standard errors, both times `scale`; undefined parts (NaN) are None."""
    value = _defined(value * scale)
    return Estimate(value, _defined(z * np.sqrt(variance) * scale) if value is not None else None)


def stratified_estimates(
    counts: np.ndarray, mapped_area: Sequence[float], classes: Sequence[str], z: float = Z95
) -> AreaEstimates:
    """Olofsson et al. (2014) estimates from (map x reference) sample counts and each map class's area."""
    n = np.asarray(counts, dtype=np.float64)
    mapped = np.asarray(mapped_area, dtype=np.float64)
    k = len(classes)
    if n.shape != (k, k) or mapped.shape != (k,):
        raise ValueError(f"stratified_estimates: ({k}, {k}) counts, {k} areas; got {n.shape}, {mapped.shape}")
    n_i = n.sum(1)
    sampled = n_i > 0
    area = np.where(sampled, mapped, 0.0)  # an unsampled stratum is not part of the assessed population
    total = area.sum()
    weight = area / total if total > 0 else np.zeros(k)  # W_i
    share = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=sampled[:, None])  # n_ij / n_i.
    with np.errstate(divide="ignore", invalid="ignore"):
        # share (1 - share) / (n_i. - 1): NaN for a stratum of one sample (no variance), 0 for no sample
        spread = np.where(sampled[:, None], share * (1.0 - share) / (n_i[:, None] - 1.0), 0.0)
        p = weight[:, None] * share  # eq. 4
        column = p.sum(0)  # p_.j, the estimated area share of each reference class
        producers = np.divide(np.diag(p), column, out=np.full(k, np.nan), where=column > 0)  # eq. 3
        estimated = total * column  # N_.j in area units
        overall = _estimate(np.trace(p), (weight**2 * np.diag(spread)).sum(), z)  # eq. 1, 5
        users = tuple(  # eq. 2, 6
            _estimate(share[i, i], spread[i, i], z) if sampled[i] else Estimate(None, None) for i in range(k)
        )
        producer_estimates = []
        for j in range(k):  # eq. 7
            others = sum(area[i] ** 2 * spread[i, j] for i in range(k) if i != j)
            own = area[j] ** 2 * (1 - producers[j]) ** 2 * spread[j, j]
            variance = (own + producers[j] ** 2 * others) / estimated[j] ** 2
            producer_estimates.append(_estimate(producers[j], variance, z))
        share_variance = (weight[:, None] ** 2 * spread).sum(0)  # eq. 10
        area_share = tuple(_estimate(column[j], share_variance[j], z) for j in range(k))
        area_estimates = tuple(_estimate(column[j], share_variance[j], z, total) for j in range(k))  # eq. 11
    return AreaEstimates(
        classes=tuple(classes),
        counts=np.asarray(counts, dtype=np.int64),
        mapped_area=mapped,
        proportions=p,
        overall=overall,
        users=users,
        producers=tuple(producer_estimates),
        area=area_estimates,
        area_share=area_share,
        unsampled=tuple(c for c, s in zip(classes, sampled, strict=True) if not s),
    )
