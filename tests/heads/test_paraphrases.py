"""Paraphrases of a trained class reach the class: matched to it, and segmenting held-out data alike."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsneo import baselines
from rsneo.heads.system import BUNDLED_MODEL, load_system
from rsneo.heads.vocabulary import load_vocabulary, match_classes
from rsneo.train.class_words import CLASS_WORDS, UNTAUGHT_PARAPHRASES

# benchmarks/vocabulary.py's list: the first four were taught as other names of "water"
# (rsneo.train.class_words), "river and lakes" and "water body" never were
PARAPHRASES = ["surface water", "open water", "lake", "flood water", "river and lakes", "water body"]
# 128 x 128 pixels of the chip's right half (columns 256-511: never trained on), about half of it water
WINDOW = Window(col_off=256, row_off=192, width=128, height=128)


@pytest.fixture(scope="module")
def bundled():
    return load_system(BUNDLED_MODEL)


def crop(source: Path, target: Path, window: Window) -> Path:
    with rasterio.open(source) as src:
        profile = src.profile | {"width": window.width, "height": window.height}
        with rasterio.open(target, "w", **profile | {"transform": src.window_transform(window)}) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return target


def test_the_paraphrases_are_split_into_taught_and_untaught_as_the_model_card_says():
    water = CLASS_WORDS["water"]
    assert {"surface water", "open water", "lake", "flood water"} <= set(water)
    assert {"river and lakes", "water body"} <= set(UNTAUGHT_PARAPHRASES)
    assert not set(UNTAUGHT_PARAPHRASES) & {w for words in CLASS_WORDS.values() for w in words}
    vocabulary = load_vocabulary(BUNDLED_MODEL)
    taught = {c.name: set(c.synonyms) for c in vocabulary.classes}
    assert {"lake", "reservoir"} <= taught["water"] and "dry land" in taught["land"]
    assert not set(UNTAUGHT_PARAPHRASES) & taught["water"]


def test_paraphrases_match_their_trained_class(bundled):
    matches = match_classes(bundled, [*PARAPHRASES, "dry land", "bare ground", "banana"])
    assert [m.nearest for m in matches] == ["water"] * len(PARAPHRASES) + ["land", "land", "land"]
    assert all(m.trained for m in matches[:-1]), [(m.name, round(m.similarity, 3)) for m in matches]
    assert not matches[-1].trained  # a name close to no taught name is still flagged


def test_paraphrases_segment_held_out_water_within_0_05_iou_of_water(bundled, shared_data, tmp_path):
    from rsneo.predict.segment import segment_raster

    base = shared_data / "sen1floods11"
    chip = crop(base / "S2" / "Spain_7370579_S2Hand.tif", tmp_path / "chip.tif", WINDOW)
    with rasterio.open(base / "Labels" / "Spain_7370579_LabelHand.tif") as src:
        label = src.read(1, window=WINDOW)
    valid = label != -1
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, name in enumerate(["water", *PARAPHRASES]):
            out = segment_raster(bundled, chip, [name, "land"], tmp_path / str(i), confidence=False)
            with rasterio.open(out.cog) as src:
                classes = src.read(1)
            scores[name] = baselines.iou(classes == 0, label == 1, valid)
    assert 0.3 < (label == 1).mean() < 0.7 and scores["water"] > 0.7, scores  # a fair test: water and land
    low = {n: round(s, 3) for n, s in scores.items() if s < scores["water"] - 0.05}
    assert not low, (scores["water"], low)
    assert np.isfinite(list(scores.values())).all()
