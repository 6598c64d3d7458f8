"""Change pipeline pieces: Otsu's threshold and the from-to decoding of blended channels."""

from __future__ import annotations

import numpy as np

from rsneo.predict.change import change_legend, from_to_classifier, otsu_threshold


def test_otsu_threshold_splits_two_groups():
    values = np.concatenate([np.linspace(0.0, 0.1, 900), np.linspace(0.5, 0.7, 100)])
    threshold = otsu_threshold(values)
    assert 0.1 <= threshold <= 0.5


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
