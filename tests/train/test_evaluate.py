"""`rsneo.train.evaluate`: chips segmented with a training module's backbone and head, and the IoU over their
labelled pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig
from rsneo.train.corpus import LabelledChip
from rsneo.train.evaluate import class_iou, predict_chips


def chip(labels: list[list[int]]) -> LabelledChip:
    return LabelledChip([], torch.tensor(labels), ("not water", "water"))


def test_class_iou_counts_labelled_pixels_of_all_chips_together():
    chips = [chip([[1, 1], [0, -1]]), chip([[0, 1], [-1, -1]])]
    predicted = [np.array([[1, 0], [1, 1]]), np.array([[1, 1], [1, 1]])]
    # the five labelled pixels, chip by chip: truth (1, 1, 0 | 0, 1), predicted (1, 0, 1 | 1, 1)
    pred = np.array([1, 0, 1, 1, 1])
    truth = np.array([1, 1, 0, 0, 1])
    expected = np.logical_and(pred, truth).sum() / np.logical_or(pred, truth).sum()
    assert expected == pytest.approx(2 / 5)
    assert class_iou(predicted, chips, 1) == pytest.approx(expected, abs=1e-12)
    assert class_iou(predicted, chips, 0) == pytest.approx(0 / 3, abs=1e-12)  # class 0 never predicted


def test_class_iou_of_a_class_absent_everywhere_is_nan_and_mismatched_sizes_are_refused():
    assert math.isnan(class_iou([np.zeros((2, 2), int)], [chip([[0, 0], [0, 0]])], 1))
    with pytest.raises(ValueError, match="class_iou: 3 predicted pixels for 4 labelled ones"):
        class_iou([np.zeros(3, int)], [chip([[0, 0], [0, 0]])], 1)


@pytest.fixture(scope="module")
def chips(flood_samples) -> list[LabelledChip]:
    return [s.chip for s in flood_samples if s.chip is not None][:3]


def test_predict_chips_gives_a_class_per_pixel_independent_of_batch_size(tiny_model, tokenizer, chips):
    torch.manual_seed(0)
    head = SegmentationHead(SegmentationHeadConfig(hidden_size=tiny_model.config.hidden_size))
    tiny_model.train(), head.train()
    one = predict_chips(tiny_model, head, tokenizer, chips, batch_size=1)
    several = predict_chips(tiny_model, head, tokenizer, chips, batch_size=2)
    assert tiny_model.training and head.training  # modes restored for the training loop
    assert len(one) == len(chips)
    for a, b, c in zip(one, several, chips, strict=True):
        assert a.shape == tuple(c.labels.shape) and set(np.unique(a)) <= {0, 1}
        np.testing.assert_array_equal(a, b)  # rows of a batch never see each other
    assert 0.0 <= class_iou(one, chips, 1) <= 1.0
