"""How a change-kind map reads: its legend, the decoding of blended probabilities into class values, and how
each class counts in the totals (`rsneo change` and `rsneo change --of buildings` alike).

A change map's predictor gives [P(no change), P(change)] and, for from-to change, the class probabilities of
the first and the last date. Value 0 is "no change"; 1 is "change", or with K classes (plus "none of these")
1 + from * K + to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsneo.heads.change import CHANGE_NAMES
from rsneo.heads.segmentation import NONE_OF_THESE
from rsneo.io.cog import ClassLegend

# (classes + "none of these")^2 + 1 class values must fit in uint8 below the nodata value
MAX_FROM_TO_CLASSES = 15
WITHIN_CLASS = "within class"
BETWEEN_CLASSES = "between classes"


def change_legend(class_names: Sequence[str] | None, untrained: tuple[str, ...] = ()) -> ClassLegend:
    """ "no change" + "change", or "no change" + one "A → B" class per pair of (classes + none of these).

    Pairs involving a class in `untrained` are marked untrained in the legend."""
    if not class_names:
        return ClassLegend.from_names(list(CHANGE_NAMES))
    names = [*class_names, NONE_OF_THESE]
    pairs = [f"{a} → {b}" for a in names for b in names]
    marked = tuple(f"{a} → {b}" for a in names for b in names if a in untrained or b in untrained)
    return ClassLegend.from_names([CHANGE_NAMES[0], *pairs], untrained=marked)


def from_to_classifier(n_classes: int | None):
    """Blended channels -> class values: 0 no change; 1 change, or 1 + from * n + to with from-to classes."""

    def classify(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        changed = probs[1] >= 0.5
        confidence = np.where(changed, probs[1], probs[0])
        if not n_classes:
            return changed.astype(np.uint8), confidence
        before = probs[2 : 2 + n_classes].argmax(0)
        after = probs[2 + n_classes : 2 + 2 * n_classes].argmax(0)
        return np.where(changed, 1 + before * n_classes + after, 0).astype(np.uint8), confidence

    return classify


def changed_and_compared(areas: dict[str, float]) -> tuple[float, float]:
    """Changed and compared area from a change map's `class_areas` (which it empties of those two keys):
    compared = the valid pixels, changed = compared minus "no change" (every change class together)."""
    compared = areas.pop("")
    return compared - areas.pop(CHANGE_NAMES[0]), compared


def change_kind(name: str) -> str:
    """How a change-map class counts: "between classes" (from != to), "within class" (the change score alone
    says change, the class stays: a new roof, a harvested field) or "change" (no classes asked)."""
    before, arrow, after = name.partition(" → ")
    if not arrow:
        return CHANGE_NAMES[1]
    return WITHIN_CLASS if before == after else BETWEEN_CLASSES


def ordered_rows(rows: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Between-class rows first, then within-class ones, each by decreasing area: the from-to table never
    mixes "vegetation → vegetation" into the class transitions."""
    order = {BETWEEN_CLASSES: 0, CHANGE_NAMES[1]: 0, WITHIN_CLASS: 1}
    return sorted(rows, key=lambda row: (order[change_kind(row[0])], -row[1]))
