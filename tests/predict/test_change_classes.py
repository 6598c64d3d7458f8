"""How a change-kind map reads (`rsneo.predict.change_classes`): legend, decoding, totals and kinds."""

from __future__ import annotations

import numpy as np

from rsneo.predict.change_classes import (
    change_kind,
    change_legend,
    changed_and_compared,
    from_to_classifier,
    ordered_rows,
)


def test_from_to_classes_code_before_and_after():
    legend = change_legend(["water", "built-up"])  # + "none of these": 3 classes, 9 pairs
    assert legend.names[0] == "no change" and len(legend.names) == 10
    # channels: P(no change), P(change), before (3), after (3); pixel 0 water -> built-up, pixel 1 unchanged
    probs = np.zeros((8, 1, 2), np.float32)
    probs[:, 0, 0] = [0.2, 0.8, 0.9, 0.05, 0.05, 0.1, 0.85, 0.05]
    probs[:, 0, 1] = [0.7, 0.3, 0.9, 0.05, 0.05, 0.9, 0.05, 0.05]
    classes, confidence = from_to_classifier(3)(probs)
    assert legend.names[classes[0, 0]] == "water → built-up" and classes[0, 1] == 0
    np.testing.assert_allclose(confidence[0], [0.8, 0.7])
    binary, _ = from_to_classifier(None)(probs[:2])
    assert binary.tolist() == [[1, 0]]
    assert change_legend(None).names == ("no change", "change")


def test_changed_area_is_every_change_class_together():
    areas = {"": 100.0, "no change": 70.0, "water → land": 20.0, "land → land": 10.0}
    assert changed_and_compared(areas) == (30.0, 100.0)
    assert areas == {"water → land": 20.0, "land → land": 10.0}  # the two totals are taken out


def test_transitions_come_before_change_within_one_class():
    rows = [("land → land", 50.0), ("water → land", 5.0), ("land → water", 9.0)]
    assert [change_kind(n) for n, _ in rows] == ["within class", "between classes", "between classes"]
    assert ordered_rows(rows) == [("land → water", 9.0), ("water → land", 5.0), ("land → land", 50.0)]
    assert change_kind("change") == "change"
