"""Other names of the trained classes: drawn per segmentation step, recorded and matched as their class."""

from __future__ import annotations

import dataclasses
from collections import Counter

import torch

from rsneo.heads.class_words import CLASS_WORDS, NARROWER, UNTAUGHT_PARAPHRASES, draw_class_names
from rsneo.heads.vocabulary import match_classes, vocabulary_for_classes


def test_draws_name_each_class_by_itself_or_one_of_its_other_names_reproducibly():
    names = ("land", "water", "cloud")
    draws = [draw_class_names(names, torch.Generator().manual_seed(s)) for s in range(200)]
    again = [draw_class_names(names, torch.Generator().manual_seed(s)) for s in range(200)]
    assert draws == again  # the step's seeded generator decides: a resumed run draws the same names
    for land, water, cloud in draws:
        assert land in CLASS_WORDS["land"] and water in CLASS_WORDS["water"] and cloud == "cloud"
    waters = Counter(d[1] for d in draws)
    assert 0.4 < waters["water"] / len(draws) < 0.7  # the class word itself about half the time
    assert len(waters) > 10  # and many of its other names
    assert not set(UNTAUGHT_PARAPHRASES) & set(waters)


def test_a_vocabulary_records_the_other_names_and_matches_them_to_their_class(tiny_system):
    vocabulary = vocabulary_for_classes(["water", "land"], "a satellite image of {}")
    water, land = vocabulary.classes
    assert water.synonyms == CLASS_WORDS["water"][1:] and land.synonyms == CLASS_WORDS["land"][1:]
    assert water.prompts[0] == "a satellite image of water"
    assert len(water.prompts) == len(CLASS_WORDS["water"])
    assert "2 other names" not in vocabulary.note and "water (" in vocabulary.note
    system = dataclasses.replace(tiny_system, vocabulary=vocabulary)
    matches = match_classes(system, ["Reservoir", "bare  soil", "water", "Open  Water", "dry land"])
    # a taught name (up to case and spacing) is its class, even in a random model's text space; one that names
    # a narrower class (a reservoir, bare soil) is read as the broader class and so is not trained
    assert [(m.nearest, m.similarity, m.trained, m.broader) for m in matches] == [
        ("water", 1.0, False, True),
        ("land", 1.0, False, True),
        ("water", 1.0, True, False),
        ("water", 1.0, True, False),
        ("land", 1.0, True, False),
    ]
    assert water.narrower == NARROWER["water"] and "reservoir" in water.narrower


def test_a_learnt_class_takes_the_other_names_of_its_land_cover_group_unless_another_class_shares_it():
    from rsneo.heads.class_words import LAND_COVER_WORDS, land_cover_names

    built = land_cover_names("Built-up", ["Built-up", "cropland"])
    assert "city" in built and "urban area" in built and "Built-up" not in built and "built-up" not in built
    assert "farmland" in land_cover_names("cropland", ["Built-up", "cropland"])
    assert land_cover_names("urban", ["urban"])[0] == "built-up"  # any name of a group finds the group
    assert land_cover_names("forest", ["forest", "trees"]) == ()  # two classes of one group: neither
    assert land_cover_names("banana", ["banana"]) == ()
    for group in LAND_COVER_WORDS:  # no name sits in two groups, nor is it narrower of another group's class
        others = {w for g in LAND_COVER_WORDS if g is not group for w in g}
        assert not set(group) & others
