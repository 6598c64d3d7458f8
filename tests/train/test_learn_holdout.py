"""`rsneo.train.learn_holdout`: whole features held out by spatial blocks, the feature choice on inner
hold-outs, scores as `segment` decides."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rsneo.train import learn_holdout
from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_holdout import (
    choose_features,
    feature_centres,
    holdout_loss,
    scores_from_confusion,
    spatial_holdout,
)


def test_spatial_holdout_keeps_features_whole_and_every_class_trained():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1000, size=(60, 2))
    classes = np.repeat([0, 1, 2], 20)
    classes[-1] = 3  # a class with a single feature cannot be held out
    held = spatial_holdout(centres, classes, share=0.25, blocks=4, seed=0)
    for c in (0, 1, 2):
        mine = held[classes == c]
        assert 0 < mine.sum() < len(mine)  # each class is both trained and scored
    assert not held[classes == 3].any()
    # held-out features are whole blocks (a 4x4 cut of their extent): no block has features on both sides
    lo, size = centres.min(0), (centres.max(0) - centres.min(0)) / 4
    block = (np.minimum(((centres - lo) / size).astype(int), 3) * [4, 1]).sum(1)
    assert not set(block[held]) & set(block[~held])
    assert (held == spatial_holdout(centres, classes, share=0.25, blocks=4, seed=0)).all()  # reproducible


def test_auto_features_choose_by_inner_holdout_of_the_training_features(
    tiny_system, flood_windows, monkeypatch
):
    """ "auto" trains both candidates on inner spatial splits of the training features only and keeps the
    better inner mean IoU; the features outside `use` (the scored hold-out) are never trained or scored."""
    labels, windows = flood_windows
    init = torch.randn(2, tiny_system.config.hidden_size)
    use = torch.ones(24, dtype=torch.bool)
    use[:3] = use[12:15] = False  # an outer hold-out of 3 features per class
    seen = []
    real_fit, real_loss = learn_holdout.fit_head, learn_holdout.holdout_loss

    def fit(head, init_vectors, windows, train, settings, tick=None):
        seen.append(("fit", settings.features, train.clone()))
        return real_fit(head, init_vectors, windows, train, settings, tick)

    def loss(head, vectors, windows, check, k):
        seen.append(("score", None, check.clone()))
        return real_loss(head, vectors, windows, check, k)

    monkeypatch.setattr(learn_holdout, "fit_head", fit)
    monkeypatch.setattr(learn_holdout, "holdout_loss", loss)
    settings = LearnSettings(steps=3, select_rounds=2)
    choice = choose_features(tiny_system.segmentation, init, windows, use, feature_centres(labels),
                             labels.class_ids, settings)  # fmt: skip
    assert choice.features in ("all", "pixels") and set(choice.inner_loss) == {"all", "pixels"}
    inner = choice.inner_loss
    assert all(v > 0 for v in inner.values())
    assert choice.features == ("pixels" if inner["pixels"] < inner["all"] else "all")  # ties: "all"
    assert [(kind, mode) for kind, mode, _ in seen] == [("fit", "all"), ("score", None), ("fit", "pixels"),
                                                        ("score", None)] * 2  # fmt: skip
    for _, _, mask in seen:
        assert not (mask & ~use).any()  # the outer hold-out is never touched
    fits = [mask for kind, _, mask in seen if kind == "fit"]
    scored = [mask for kind, _, mask in seen if kind == "score"]
    for train, check in zip(fits, scored, strict=True):
        assert check.any() and not (train & check).any()
    fixed = LearnSettings(features="pixels")
    centres = feature_centres(labels)
    assert choose_features(tiny_system.segmentation, init, windows, use, centres, labels.class_ids,
                           fixed).features == "pixels"  # fmt: skip


def test_holdout_loss_is_the_weighted_training_loss(tiny_system, flood_windows):
    """Each class weighs the same: a head sure of every held-out pixel's class scores near 0, a uniform one
    log(K + 1) (K classes and "none of these")."""
    _, windows = flood_windows
    head = copy.deepcopy(tiny_system.segmentation)
    use = torch.ones(24, dtype=torch.bool)
    with torch.no_grad():
        head.decoder.out.weight.zero_()
        head.decoder.out.bias.zero_()  # every pixel embedding 0: every logit 0, "none" at 0 too
    vectors = torch.randn(2, tiny_system.config.hidden_size)
    assert holdout_loss(head, vectors, windows, use, 2) == pytest.approx(np.log(3), rel=1e-4)


def test_scores_count_none_of_these_as_wrong():
    """IoU = TP / (TP + FP + FN) and F1 = 2TP / (2TP + FP + FN) per class from a reference x predicted table
    whose last column is "none of these": a miss for its class, a false positive for no class."""
    confusion = np.array([[8, 1, 1], [2, 6, 0]])  # water: 8 right, 1 as land, 1 as none; land: 2 as water
    scores = scores_from_confusion(confusion, ["water", "land"], np.array([3, 2]))
    assert scores["water"].iou == pytest.approx(8 / (8 + 2 + 2)) and scores["water"].f1 == pytest.approx(
        16 / 20
    )
    assert scores["land"].iou == pytest.approx(6 / (6 + 1 + 2)) and scores["land"].pixels == 8
    assert (scores["water"].features, scores["land"].features) == (3, 2)
    empty = scores_from_confusion(np.zeros((1, 2), np.int64), ["snow"])
    assert empty["snow"].iou is None and empty["snow"].f1 is None
