"""What a fine-tuned model folder records: the training domain of its samples and the vocabulary's scores
(earlier classes kept and said to be earlier; stale scores dropped when the backbone changed under them)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

from rsneo.data.labelled import ClassTable, mask_chips
from rsneo.heads.domain import pixel_size
from rsneo.heads.vocabulary import TrainedClass, Vocabulary
from rsneo.train.finetune_export import data_names, trained_domain, vocabulary


def test_the_domain_is_the_samples_sensors_and_measured_pixel_sizes(shared_data):
    flood = shared_data / "sen1floods11"
    table = ClassTable.parse("0=land,1=water", ignore=-1)
    chips = mask_chips(flood / "S2", flood / "Labels", table, chip=256)
    domain = trained_domain(chips, size=None)
    assert domain.sensors == ("sentinel2_l1c",)
    size = pixel_size(next((flood / "S2").glob("*.tif")))  # metres of the chip's geographic grid
    assert 8 < size < 11 and domain.pixel_size_m == pytest.approx((size, size))


def test_images_without_georeference_take_the_given_pixel_size(levir_crops):
    from rsneo.data.labelled import change_pairs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNGs: pixel units, said once by the reader
        pairs = change_pairs(levir_crops)
    assert trained_domain(pairs, size=0.5).pixel_size_m == (0.5, 0.5)


def test_data_names_say_what_was_trained_on():
    ft = {"task": "segment", "segment": [{"images": "a", "masks": "b"}, {"images": "c", "masks": "d"}]}
    assert data_names(ft, {"data": {"root": None}}) == "a with b; c with d"
    assert data_names({"task": "change"}, {"data": {"root": "/x/levir"}}) == "/x/levir"


def _system(classes):
    return SimpleNamespace(vocabulary=Vocabulary(tuple(classes), 0.9, "bundled"))


def test_a_change_fine_tune_of_the_backbone_drops_the_segmentation_scores_it_made_stale():
    old = [TrainedClass("water", ("water",), {"iou": 0.8})]
    head = SimpleNamespace(config=SimpleNamespace())
    result = SimpleNamespace(task="change")
    kept = vocabulary(_system(old), head, result, "pairs", backbone_changed=False)
    assert kept.classes[0].held_out == {"iou": 0.8}
    stale = vocabulary(_system(old), head, result, "pairs", backbone_changed=True)
    assert stale.classes[0].held_out == {} and "Held-out scores dropped" in stale.note
