"""Paraphrases of a trained class reach the class: matched to it, and segmenting held-out data alike."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsneo import baselines
from rsneo.heads.class_words import CLASS_WORDS, UNTAUGHT_PARAPHRASES
from rsneo.heads.system import BUNDLED_MODEL, load_system
from rsneo.heads.vocabulary import load_vocabulary, match_classes

# benchmarks/vocabulary.py's list: all but "river and lakes" were taught as other names of "water"
# (rsneo.heads.class_words); "river and lakes" and "rivers and lakes" never were
PARAPHRASES = [
    "surface water",
    "open water",
    "lake",
    "flood water",
    "water body",
    "river and lakes",
    "rivers and lakes",
]
# 128 x 128 pixels of the chip's right half (columns 256-511: never trained on), about half of it water
WINDOW = Window(col_off=256, row_off=192, width=128, height=128)


@pytest.fixture(scope="module")
def bundled():
    return load_system(BUNDLED_MODEL)


def test_the_paraphrases_are_split_into_taught_and_untaught_as_the_model_card_says():
    water = CLASS_WORDS["water"]
    assert {"surface water", "open water", "lake", "flood water", "water body"} <= set(water)
    assert {"river and lakes", "rivers and lakes"} <= set(UNTAUGHT_PARAPHRASES)
    assert not set(UNTAUGHT_PARAPHRASES) & {w for words in CLASS_WORDS.values() for w in words}
    vocabulary = load_vocabulary(BUNDLED_MODEL)
    taught = {c.name: set(c.synonyms) for c in vocabulary.classes}
    assert {"lake", "reservoir"} <= taught["water"] and "dry land" in taught["land"]
    assert not set(UNTAUGHT_PARAPHRASES) & taught["water"]


def test_paraphrases_match_their_trained_class(bundled):
    matches = match_classes(bundled, [*PARAPHRASES, "dry land", "bare ground", "banana"])
    assert [m.nearest for m in matches] == ["water"] * len(PARAPHRASES) + ["land", "land", "land"]
    narrower = {"lake", "flood water", "bare ground"}  # taught, but narrower: read as the broader class
    assert all(m.trained for m in matches[:-1] if m.name not in narrower), [
        (m.name, round(m.similarity, 3)) for m in matches
    ]
    assert all(m.broader and not m.trained for m in matches if m.name in narrower)
    assert not matches[-1].trained  # a name close to no taught name is still flagged


def test_paraphrases_segment_held_out_water_within_0_05_iou_of_water(bundled, shared_data):
    """`rsneo segment --classes "NAME, land"`'s predictor on one window of the held-out half."""
    from rsneo.data.frames import band_layout, model_band_groups
    from rsneo.predict.maps.segmentation import SegmentationPredictor

    base = shared_data / "sen1floods11"
    image = base / "S2" / "Spain_7370579_S2Hand.tif"
    with rasterio.open(image) as src:
        pixels = src.read(window=WINDOW).astype(np.float32)  # (bands, 128, 128)
    with rasterio.open(base / "Labels" / "Spain_7370579_LabelHand.tif") as src:
        label = src.read(1, window=WINDOW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout = band_layout(image, band_groups=model_band_groups(bundled.config))
    valid = label != -1
    scores = {}
    for name in ["water", *PARAPHRASES]:
        probs = SegmentationPredictor(bundled, layout, [name, "land"])(pixels[None], valid[None])[0]
        scores[name] = baselines.iou(probs.argmax(0) == 0, label == 1, valid)
    assert 0.3 < (label == 1).mean() < 0.7 and scores["water"] > 0.7, scores  # a fair test: water and land
    low = {n: round(s, 3) for n, s in scores.items() if s < scores["water"] - 0.05}
    assert not low, (scores["water"], low)
    # the map follows the name (the test can fail): a name of land typed in place of water maps other pixels
    probs = SegmentationPredictor(bundled, layout, ["bare ground", "land"])(pixels[None], valid[None])[0]
    assert baselines.iou(probs.argmax(0) == 0, label == 1, valid) < scores["water"] - 0.05
