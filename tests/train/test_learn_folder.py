"""`rsneo.train.learn_folder`: the learnt folder's vocabulary keeps the base classes still decided as before,
and its domain records the learn rasters."""

from __future__ import annotations

import copy

import pytest
import torch

from rsneo.heads.system import load_system
from rsneo.train.learn_folder import base_classes_kept


def test_base_classes_kept_while_decided_as_before(tiny_model_dir, flood_windows, tmp_path):
    """A base class stays in the vocabulary while the retrained head still decides it as the base head did."""
    import shutil

    from rsneo.heads.vocabulary import TrainedClass, Vocabulary, save_vocabulary

    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    save_vocabulary(folder, Vocabulary((TrainedClass("water", ("a satellite image of water",), {"iou": 0.8}),
                                        TrainedClass("land", ("a satellite image of land",)))))  # fmt: skip
    system = load_system(folder)
    _, windows = flood_windows
    same = base_classes_kept(system, system.segmentation, windows, ["Flood water", "dry ground"])
    assert set(same["kept"]) == {"water", "land"} and not same["dropped"] and same["pixel_agreement"] == 1.0
    assert all(v in (None, 1.0) for v in same["kept"].values())
    flipped = copy.deepcopy(system.segmentation)
    with torch.no_grad():  # every pixel embedding negated: each pixel's decision among the two classes flips
        flipped.decoder.out.weight.neg_()
        flipped.decoder.out.bias.neg_()
    other = base_classes_kept(system, flipped, windows, ["Flood water", "dry ground"])
    assert other["pixel_agreement"] < 0.9 and other["dropped"]
    assert set(other["kept"]) | set(other["dropped"]) == {"water", "land"}
    retaught = base_classes_kept(system, system.segmentation, windows, ["WATER", "dry ground"])
    assert set(retaught["kept"]) == {"land"}  # a name taught again is the learnt class, not the base one


def test_a_learnt_folder_records_the_learn_rasters_and_keeps_the_change_record(shared_data):
    """The segmentation head was retrained on the learn rasters (their sensor and measured pixel size); the
    change head, frozen, keeps the starting model's record, and none when it had none."""
    from rsneo.heads.domain import HeadDomain, TrainingDomain
    from rsneo.train.learn_folder import learnt_domain

    s2 = shared_data / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
    record = {"rasters": [str(s2)], "sensor": "sentinel2_l1c"}
    base = TrainingDomain({"change": HeadDomain(("naip",), (5.0, 5.0))})
    domain = learnt_domain(record, base)
    assert domain.heads["segmentation"].sensors == ("sentinel2_l1c",)
    assert domain.heads["segmentation"].pixel_size_m == pytest.approx((8.86, 8.86), abs=0.05)
    assert domain.heads["change"] == base.heads["change"]
    assert set(learnt_domain(record).heads) == {"segmentation"}
    photo = {"rasters": [str(shared_data / "levir_cd" / "B" / "test_7_0256_0512.png")], "sensor": "rgb"}
    assert learnt_domain(photo).heads["segmentation"] == HeadDomain(("rgb",))  # size unknown: not checked


def test_learnt_classes_take_their_common_names_from_the_starting_classes_they_replace(tiny_model_dir):
    """A learnt "cropland" is known as "farmland" and "fields"; the starting model's "land", kept, no longer
    answers to those names (they name the learnt class now), and keeps the others."""
    import dataclasses

    from rsneo.heads.class_words import CLASS_WORDS
    from rsneo.heads.vocabulary import vocabulary_for_classes
    from rsneo.train.learn_folder import learnt_vocabulary

    system = load_system(tiny_model_dir)
    base = vocabulary_for_classes(["water", "land"], "a satellite image of {}")
    record = {"learnt_classes": ["cropland", "forest"], "labels": "l.gpkg", "class_field": "cover",
              "holdout": {"method": "k-fold", "scores": {"cropland": {"iou": 0.5, "f1": 0.6}}},
              "base_classes": {"kept": {"land": 0.95}}}  # fmt: skip
    vocabulary = learnt_vocabulary(system.segmentation, record, base)
    cropland, forest, land = vocabulary.classes
    assert vocabulary.names == ("cropland", "forest", "land")
    assert {"farmland", "fields", "arable land"} <= set(cropland.synonyms) and "trees" in forest.synonyms
    assert cropland.by_name_only and not land.by_name_only
    assert cropland.held_out["iou"] == 0.5 and forest.held_out == {}  # --folds 0 or no score: none
    assert "farmland" not in land.synonyms and "fields" not in land.synonyms
    assert set(land.synonyms) == set(CLASS_WORDS["land"][1:]) - {"farmland", "fields"}
    assert dataclasses.replace(land, synonyms=()).narrower == base.classes[1].narrower
