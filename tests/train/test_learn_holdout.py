"""`rsneo.train.learn_holdout`: spatial k-fold over whole features (blocks refined when labels cluster), the
feature choice on inner hold-outs, scores as `segment` decides, thin classes flagged."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsneo.train import learn_holdout
from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_holdout import (
    choose_features,
    cross_validate,
    feature_centres,
    holdout_loss,
    scores_from_confusion,
    spatial_folds,
)


def _blocks_of(centres: np.ndarray, blocks: int) -> np.ndarray:
    lo, size = centres.min(0), centres.max(0) - centres.min(0)
    cell = np.minimum(((centres - lo) / size * blocks).astype(int), blocks - 1)
    return cell[:, 0] * blocks + cell[:, 1]


def test_spatial_folds_hold_out_whole_blocks_and_every_feature_once():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1000, size=(60, 2))
    classes = np.repeat([0, 1, 2], 20)
    classes[-1] = 3  # a class with a single feature cannot be held out
    folds = spatial_folds(centres, classes, folds=4, blocks=4, seed=0)
    assert folds.count == 4 and folds.blocks == 4  # spread labels: no refinement needed
    assert (folds.fold[classes == 3] == -1).all() and (folds.fold[classes < 3] >= 0).all()
    for c in (0, 1, 2):
        held = np.bincount(folds.fold[classes == c], minlength=4)
        assert (held >= 1).all() and (20 - held >= 3).all()  # each fold scores it and trains on >= 3
    block = _blocks_of(centres, folds.blocks)
    for b in np.unique(block):  # a block's features are all in one fold: whole blocks held out
        assert len(set(folds.fold[(block == b) & (classes < 3)])) <= 1
    again = spatial_folds(centres, classes, folds=4, blocks=4, seed=0)
    assert (folds.fold == again.fold).all()  # reproducible


def test_clustered_labels_refine_the_blocks_instead_of_holding_out_a_whole_class():
    """The issue's case: 22 vegetation and 22 water polygons, each class in its own corner of the labels'
    extent (two far-off polygons stretch it). With 4 x 4 blocks a whole class sits in one block, so one fold
    would hold out 21-22 of its 22 polygons and score a head trained on one or none; the folds refine their
    blocks until no fold holds more than twice its share of a class."""
    rng = np.random.default_rng(3)
    vegetation = rng.uniform(0, 50, size=(22, 2))
    water = rng.uniform(0, 50, size=(22, 2)) + [900, 900]
    far = np.array([[0.0, 1000.0], [1000.0, 0.0]])
    centres = np.concatenate([vegetation, water, far])
    classes = np.array([0] * 22 + [1] * 22 + [0, 1])
    assert len(set(_blocks_of(centres, 4)[classes == 0][:22])) == 1  # the collapse: one block per class
    folds = spatial_folds(centres, classes, folds=4, blocks=4, seed=0)
    assert folds.blocks > 4
    for c in (0, 1):
        held = np.bincount(folds.fold[classes == c], minlength=4)
        assert held.max() <= 12 and (23 - held).min() >= 11, held
    block = _blocks_of(centres, folds.blocks)
    for b in np.unique(block):
        assert len(set(folds.fold[block == b])) == 1


def test_cross_validation_scores_every_feature_once_and_flags_thin_classes(tiny_system, flood_windows):
    labels, windows = flood_windows
    init = torch.randn(2, tiny_system.config.hidden_size)
    centres, classes = feature_centres(labels), labels.class_ids
    settings = LearnSettings(steps=2, features="all")
    checked = cross_validate(tiny_system.segmentation, init, windows, centres, classes, labels.classes,
                             settings)  # fmt: skip
    assert checked.folds.count == 4 and checked.warnings == []
    for k, name in enumerate(labels.classes):
        score = checked.scores[name]
        assert score.features == (classes == k).sum() == 12  # every feature scored once
        assert 3 <= score.trained_on < 12 and score.pixels > 0
    # a class of 3 features: 4 folds cannot leave 3 to train on while holding some out: warned
    keep = torch.ones(len(classes), dtype=torch.bool)
    thin = np.flatnonzero(classes == 0)[3:]
    keep[thin] = False
    kept = [w.subset(keep[w.feature]) for w in windows]
    kept = [w for w in kept if len(w.classes)]
    index = np.flatnonzero(keep.numpy())
    renumber = np.full(len(classes), -1)
    renumber[index] = np.arange(len(index))
    kept = [replace(w, feature=torch.from_numpy(renumber[w.feature.numpy()])) for w in kept]
    few = cross_validate(tiny_system.segmentation, init, kept, centres[index], classes[index],
                         labels.classes, settings)  # fmt: skip
    name = labels.classes[0]
    assert few.scores[name].features == 3 and few.scores[name].trained_on == 2
    assert len(few.warnings) == 1 and f'class "{name}": 3 held-out features' in few.warnings[0]
    assert "fewer than 3 on one side" in few.warnings[0]


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
