"""Sentences made from labels: exact wording, shares over valid pixels only."""

from __future__ import annotations

import numpy as np

from rsneo.train.sentences import change_sentence, class_share_sentence, scene_labels_sentence


def test_class_shares_leave_nodata_out_and_list_the_largest_first():
    mask = np.array([[1, 1, 1], [0, -1, -1]])
    assert (
        class_share_sentence(mask, {0: "land", 1: "water"})
        == "Water covers 75% of the image, land covers 25%."
    )
    assert class_share_sentence(np.full((2, 2), -1), {0: "land"}) == "No pixel of the image is labelled."


def test_real_flood_mask_sentence_matches_its_water_share(shared_data):
    import rasterio

    with rasterio.open(shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif") as src:
        mask = src.read(1)
    valid = mask >= 0
    water = round(100 * (mask[valid] == 1).mean())
    sentence = class_share_sentence(mask, {0: "land", 1: "water"})
    assert f"water covers {water}%" in sentence.lower()


def test_scene_labels_and_change_statistics():
    assert (
        scene_labels_sentence(["Pastures", "Coniferous forest"]) == "Land cover: pastures, coniferous forest."
    )
    assert (
        change_sentence(4227, 17163, "2000", "2003")
        == "Between 2000 and 2003, 20% of the checked pixels changed."
    )


def test_answers_state_shares_and_labels_in_short_sentences():
    from rsneo.train.sentences import change_answer, flood_description, land_cover_answer, water_answer

    mask = np.array([[1, 0, 0, 0], [0, 0, -1, -1]])
    assert water_answer(mask) == "About 17% of this image is water."
    assert water_answer(np.zeros((2, 2), int)) == "There is no water in this image."
    assert flood_description(mask) == "The scene shows land and water. About 17% of this image is water."
    assert land_cover_answer(["Pastures", "Water bodies"]) == "The scene shows pastures and water bodies."
    assert change_answer(0.0) == "No change is visible between these images."
    assert change_answer(0.2) == "Less than 1% of the area changed between these images."
    assert change_answer(12.4) == "About 12% of the area changed between these images."
