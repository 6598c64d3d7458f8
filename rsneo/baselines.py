"""Simple, training-free baselines the bundled model is measured against (see docs/model_card.md).

Water: MNDWI = (green - swir16) / (green + swir16) above a threshold (Xu 2006; 0 is the customary cut).
Change: change-vector analysis, the per-pixel Euclidean norm of the band difference, cut by Otsu's threshold;
each band of each date is standardised first (zero mean, unit variance), the usual radiometric normalisation
without which seasonal offsets between the dates dominate the difference.
Scores (IoU, F1, kappa) come from `rsneo.metrics`, as everywhere in rsneo.
"""

from __future__ import annotations

import numpy as np

from rsneo.metrics import IGNORE, confusion_matrix, scores


def mndwi(green: np.ndarray, swir16: np.ndarray) -> np.ndarray:
    """Modified normalised difference water index, in [-1, 1]; 0 where both bands are 0."""
    green, swir16 = green.astype(np.float64), swir16.astype(np.float64)
    total = green + swir16
    return np.divide(green - swir16, total, out=np.zeros_like(total), where=total != 0)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of a 1-D sample."""
    values = values[np.isfinite(values)].astype(np.float64)
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)  # pixels at or below each bin
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def change_vector_magnitude(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(bands, H, W) x 2 -> (H, W) Euclidean norm of the per-band difference."""
    diff = after.astype(np.float64) - before.astype(np.float64)
    return np.sqrt((diff**2).sum(axis=0))


def standardise_bands(image: np.ndarray) -> np.ndarray:
    """(bands, H, W) -> same shape, each band with zero mean and unit variance."""
    image = image.astype(np.float64)
    mean = image.mean(axis=(1, 2), keepdims=True)
    std = image.std(axis=(1, 2), keepdims=True)
    return (image - mean) / np.where(std > 0, std, 1.0)


def cva_otsu(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(bands, H, W) x 2 -> (H, W) bool change map: CVA magnitude of standardised bands above Otsu's cut."""
    magnitude = change_vector_magnitude(standardise_bands(before), standardise_bands(after))
    return magnitude > otsu_threshold(magnitude.ravel())


def iou(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks over the `valid` pixels; NaN when both are empty."""
    reference = np.asarray(truth, dtype=np.int64)
    if valid is not None:
        reference = np.where(valid, reference, IGNORE)
    measured = scores(confusion_matrix(reference, np.asarray(predicted, np.int64), 2), ("other", "class"))
    value = measured.per_class["class"].iou
    return float("nan") if value is None else value


def binary_scores(predicted: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """Scores of a boolean change map on a sparse reference (`positive` changed, `negative` unchanged pixels).

    Returns overall accuracy, Cohen's kappa, precision, recall, F1 and the share marked changed, over the
    reference pixels only (`rsneo.metrics`; a score that is undefined, such as precision with nothing marked
    changed, is 0).
    """
    reference = np.where(positive, 1, np.where(negative, 0, IGNORE))
    confusion = confusion_matrix(reference, np.asarray(predicted, np.int64), 2)
    measured = scores(confusion, ("no change", "change"))
    change = measured.per_class["change"]
    return {
        "accuracy": measured.overall_accuracy,
        "kappa": measured.kappa or 0.0,
        "precision": change.precision or 0.0,
        "recall": change.recall or 0.0,
        "f1": change.f1 or 0.0,
        "predicted_share": float(confusion[:, 1].sum() / confusion.sum()),  # of the reference pixels
    }
