"""Calibrating "none of these": at most `rate` of the trained pixels are abstained on; never raised."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from rsneo.data.documents import image_documents
from rsneo.heads.features import image_features
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.system import load_system
from rsneo.train.abstain import best_cosines, calibrated_threshold
from rsneo.train.teach_words import flood_chips


def test_the_threshold_is_the_rate_quantile_and_never_raised():
    cosines = torch.linspace(-1.0, 1.0, 2001)
    assert calibrated_threshold(cosines, current=0.5, rate=0.01) == pytest.approx(-0.98, abs=1e-4)
    assert calibrated_threshold(cosines, current=-0.99, rate=0.01) == -0.99  # already lower: kept
    with pytest.raises(ValueError, match="rate"):
        calibrated_threshold(cosines, current=0.0, rate=1.5)


@torch.no_grad()
def abstained(system, chips) -> float:
    """The share of labelled pixels whose most probable channel is "none of these", as segment maps them."""
    head, vectors = system.segmentation, class_vectors(system, list(chips[0].class_names))
    none, total = 0, 0
    for chip in chips:
        inputs = image_documents([[chip.groups]], system.model.config)
        features = image_features(system.model, inputs, head.config.early_layer)
        probs = head.probabilities(head(features, vectors))
        labelled = chip.labels >= 0
        none += int((probs[0].argmax(0) == len(vectors))[labelled].sum())
        total += int(labelled.sum())
    return none / total


def test_after_calibration_segment_abstains_on_at_most_the_rate_of_trained_pixels(tiny_system, shared_data):
    system = copy.deepcopy(tiny_system)
    chips = flood_chips(system, shared_data)[:8]  # 32,768 labelled pixels
    head = system.segmentation
    head.config.none_threshold = 0.5  # a threshold that abstains on most trained pixels of this random model

    assert abstained(system, chips) > 0.5
    head.config.none_threshold = calibrated_threshold(best_cosines(system, chips), 0.5, rate=0.02)
    # softmax: "none" wins a pixel whose best cosine is below the threshold and whose classes tie closely
    assert 0.01 <= abstained(system, chips) <= 0.025


def test_a_fold_model_is_calibrated_on_folded_chips(tiny_system, shared_data):
    system = copy.deepcopy(tiny_system)
    sensor = flood_chips(system, shared_data)
    system.model.config.band_groups = "fold"
    folded = flood_chips(system, shared_data)
    assert len(sensor) == len(folded) and len(sensor[0].groups) > 1 and len(folded[0].groups) == 1
    assert folded[0].groups[0].pixels.shape[0] == sum(g.pixels.shape[0] for g in sensor[0].groups)


def test_the_command_writes_the_threshold_into_the_folder(tiny_model_dir, shared_data, tmp_path):
    folder = tmp_path / "model"
    subprocess.run(["cp", "-r", str(tiny_model_dir), str(folder)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "rsneo.train.abstain", str(folder), "--data-root", str(shared_data)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "none_threshold 0.0000 ->" in done.stdout
    threshold = load_system(folder).segmentation.config.none_threshold
    assert threshold <= 0.0 and f"-> {threshold:.4f}" in done.stdout
