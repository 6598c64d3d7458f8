"""Fine-tuning data (rsneo.train.finetune_data): normalised as prediction normalises, a validation split
that never trains on a scored pixel, augmentation alike for every date and the labels, reproducible draws."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from rsneo.data.frames import band_layout
from rsneo.data.labelled import ClassTable, change_pairs, mask_chips
from rsneo.model.config import RSNeoConfig
from rsneo.train.finetune_data import (
    TrainingChips,
    ValidationSamples,
    dihedral,
    hold_out_blocks,
    prepare,
    split_samples,
)

CONFIG = RSNeoConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def pairs(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PNGs have no georeference
        return change_pairs(shared_data / "levir_cd")


@pytest.fixture(scope="module")
def prepared(pairs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [prepare(s, "sensor", 32) for s in pairs[:3]]


def test_every_date_is_normalised_as_prediction_normalises_its_file(pairs, prepared, shared_data):
    """The pixels training sees are what `BandLayout.images` (prediction's window path) makes of each file."""
    sample, item = pairs[0], prepared[0]
    for t, folder in enumerate(("A", "B")):
        path = shared_data / "levir_cd" / folder / f"{sample.name}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layout = band_layout(path, band_groups="sensor")
        values = sample.scene.values[t]
        groups = layout.images(values, np.ones(values.shape[-2:], bool))
        expected = np.concatenate([g.pixels.numpy() for g in groups])
        assert np.allclose(item.pixels[t], expected, atol=1e-6)
    assert item.layout.band_names == ("red", "green", "blue")
    assert np.array_equal(item.train, sample.mask)


def test_a_sentinel2_chip_keeps_its_nodata_out_of_the_labels(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flood = shared_data / "sen1floods11"
        chips = mask_chips(
            flood / "S2", flood / "Labels", ClassTable.parse("0=land,1=water", ignore=-1), chip=256
        )
        item = prepare(chips[0], "sensor", 32)
    assert item.pixels.shape == (1, 13, 256, 256)
    assert np.isfinite(item.pixels).all()
    assert set(np.unique(item.train)) <= {-1, 0, 1}
    assert item.classes == ("land", "water")


def test_validation_blocks_are_never_trained_on_nor_within_the_margin(prepared):
    rng = np.random.default_rng(0)
    item = hold_out_blocks(prepared[0], share=0.2, block=64, margin=8, rng=rng)
    scored, trained = item.val >= 0, item.train >= 0
    assert scored.any() and trained.any() and not (scored & trained).any()
    assert 0.1 < scored.mean() < 0.3  # about 3 of 16 blocks
    # every training label lies more than the margin away from every scored pixel
    distance = ndimage.distance_transform_cdt(~scored, metric="chessboard")
    assert distance[trained].min() > 8
    # nothing labelled is lost except the margin: scored + trained + margin = all labelled pixels
    assert np.array_equal(item.val[scored], prepared[0].train[scored])


def test_pairs_listed_in_val_txt_validate_and_test_pairs_stay_out(prepared):
    items, note = split_samples(prepared, ["train", "val", "test"], "auto", 0.2, 64, 8, 0)
    assert [i.name for i in items] == [p.name for p in prepared[:2]]
    assert (items[0].train >= 0).any() and not (items[0].val >= 0).any()
    assert (items[1].val >= 0).any() and not (items[1].train >= 0).any()
    assert note == "1 pair(s) of list/val.txt"
    blocks, note = split_samples(prepared, [None] * 3, "auto", 0.2, 64, 8, 0)
    assert all((b.val >= 0).any() and (b.train >= 0).any() for b in blocks)
    assert note.startswith("spatial blocks of 64 px")


def test_a_split_that_cannot_be_made_is_refused():
    from rsneo.errors import InputError

    with pytest.raises(InputError, match="list/val.txt"):
        split_samples([], [], "list", 0.2, 64, 8, 0)
    with pytest.raises(InputError, match="expected auto, list, blocks or samples"):
        split_samples([], [], "random", 0.2, 64, 8, 0)


def test_whole_samples_validate_and_the_rest_train_untouched(prepared):
    from rsneo.errors import InputError

    items, note = split_samples(prepared, [None] * 3, "samples", 0.2, 64, 8, 0)
    held = [i for i in items if (i.val >= 0).any()]
    assert len(held) == 1 and not (held[0].train >= 0).any()  # round(0.2 x 3) = 1, whole
    original = {p.name: p.train for p in prepared}
    assert np.array_equal(held[0].val, original[held[0].name])
    for item in items:
        if item is not held[0]:
            assert np.array_equal(item.train, original[item.name]) and not (item.val >= 0).any()
    assert note == f"1 whole sample held out: {held[0].name}"
    again, _ = split_samples(prepared, [None] * 3, "samples", 0.2, 64, 8, 0)
    assert [(i.val >= 0).any() for i in again] == [(i.val >= 0).any() for i in items]  # seeded
    most, _ = split_samples(prepared, [None] * 3, "samples", 0.9, 64, 8, 0)
    assert sum((i.train >= 0).any() for i in most) == 1  # never all of them
    listed, _ = split_samples(prepared, ["train", "train", "test"], "samples", 0.5, 64, 8, 0)
    assert [i.name for i in listed] == [p.name for p in prepared[:2]]  # test pairs stay out
    with pytest.raises(InputError, match="at least 2 labelled samples"):
        split_samples(prepared[:1], [None], "samples", 0.2, 64, 8, 0)


def test_auto_holds_whole_samples_out_from_five_on_and_blocks_below(prepared):
    from rsneo.train.finetune_data import SAMPLES_TO_HOLD_OUT

    five = [replace(prepared[i % 3], name=f"pair_{i}") for i in range(SAMPLES_TO_HOLD_OUT)]
    items, note = split_samples(five, [None] * 5, "auto", 0.2, 64, 8, 0)
    assert note.startswith("1 whole sample held out: pair_")
    assert sum((i.val >= 0).any() for i in items) == 1
    items, note = split_samples(five[:4], [None] * 4, "auto", 0.2, 64, 8, 0)
    assert note.startswith("spatial blocks") and all((i.val >= 0).any() for i in items)


def test_validation_blocks_hold_every_class_of_the_sample_even_a_rare_one(prepared):
    """A class in one block of sixteen (a pond in a scene of land) is missed by most draws of 3 blocks; each
    such draw gains one block holding it. A draw that holds every class is the seed's own, unchanged."""
    labels = np.where(prepared[0].train >= 0, 0, prepared[0].train)
    labels[200:210, 200:210] = 1  # block (3, 3) alone
    item = replace(prepared[0], train=labels)
    covered = 0
    for seed in range(16):
        plain = np.random.default_rng(seed).choice(16, 3, replace=False)
        held = hold_out_blocks(item, share=0.2, block=64, margin=8, rng=np.random.default_rng(seed))
        assert set(np.unique(held.val[held.val >= 0]).tolist()) == {0, 1}
        assert not (held.train == 1).any()  # the pond validates, so it is not trained on
        blocks = {(r, c) for r in range(4) for c in range(4) if (held.val[r * 64, c * 64] >= 0)}
        assert blocks >= {divmod(int(i), 4) for i in plain}  # the draw itself is kept
        assert len(blocks) == 3 + (15 not in plain)
        covered += 15 in plain
    assert 0 < covered < 16  # both cases were exercised


def test_a_sample_of_one_class_alone_is_not_held_out_while_others_have_more(prepared):
    """A LEVIR-CD pair without change (train_386 in ../shared) held out alone scores F1 0 at every epoch. Such
    a draw is swapped for a pair with change; draws of pairs with change stay the seed's own."""
    six = [replace(prepared[i % 3], name=f"pair_{i}") for i in range(6)]
    unchanged = replace(six[4], train=np.where(six[4].train >= 0, 0, six[4].train))
    six[4] = unchanged
    swapped = 0
    for seed in range(12):
        items, note = split_samples(six, [None] * 6, "samples", 0.2, 64, 8, seed)
        [held] = [i for i, item in enumerate(items) if (item.val >= 0).any()]
        plain = int(np.random.default_rng(seed).choice(list(range(6)), 1, replace=False)[0])
        assert held != 4 and held == (plain if plain != 4 else held)
        swapped += plain == 4
        assert note == f"1 whole sample held out: pair_{held}"
    assert swapped > 0  # the rule was exercised
    lone = [replace(six[i], train=np.where(six[i].train >= 0, 0, six[i].train)) for i in range(6)]
    _, note = split_samples(lone, [None] * 6, "samples", 0.2, 64, 8, 3)
    assert note.endswith(": one class only, no other sample had more)")


def test_whole_samples_are_held_out_per_class_list_and_a_lone_dataset_keeps_its_training(prepared):
    """Two datasets naming their classes differently: the one with a single sample is never moved whole to
    validation (its class names would never train); it is validated on blocks instead."""
    from rsneo.errors import InputError

    five = [replace(prepared[i % 3], name=f"pair_{i}") for i in range(5)]
    lone = replace(prepared[0], name="other", classes=("meadow", "road"))
    items, note = split_samples([*five, lone], [None] * 6, "auto", 0.2, 64, 8, 0)
    other = items[-1]
    assert (other.train >= 0).any() and (other.val >= 0).any()  # blocks: both
    assert sum(not (i.train >= 0).any() for i in items[:5]) == 1  # one of the five, whole
    assert note.startswith("1 whole sample held out: pair_") and "spatial blocks of 64 px" in note
    with pytest.raises(InputError, match="at least 2 labelled samples of each class list"):
        split_samples([*five, lone], [None] * 6, "samples", 0.2, 64, 8, 0)


def test_dihedral_moves_pixels_of_both_dates_and_labels_alike():
    pixels = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    labels = pixels[0, 0].astype(np.int64)  # a label that names its own pixel
    for k in range(4):
        for flip in (False, True):
            p, lab = dihedral([pixels, labels], k, flip)
            assert np.array_equal(p[0, 0].astype(np.int64), lab)
            assert np.array_equal(p[1, 2] - p[0, 2], pixels[1, 2] - pixels[0, 2])  # dates stay aligned


def test_training_chips_are_drawn_alike_for_one_epoch_and_index(prepared):
    chips = TrainingChips(prepared, CONFIG, chip=64, batch_size=2, steps=3, seed=5)
    a, b = chips[1], chips[1]
    assert a["labels"].shape == (2, 64, 64) and a["frames"] == 2
    assert np.array_equal(a["labels"].numpy(), b["labels"].numpy())
    chips.epoch = 1
    assert not np.array_equal(chips[1]["labels"].numpy(), a["labels"].numpy())
    pixels = a["inputs"].images[0].pixels  # the first chip's first date, as the model reads it
    assert pixels.shape == (3, 64, 64)


def test_chips_fit_the_smallest_sample_of_their_group(prepared):
    small = replace(prepared[0], pixels=prepared[0].pixels[..., :96, :96], train=prepared[0].train[:96, :96])
    chips = TrainingChips([small, prepared[1]], CONFIG, chip=256, batch_size=2, steps=1, seed=0)
    assert chips[0]["labels"].shape == (2, 96, 96)


def test_validation_takes_whole_samples_with_scored_labels_only(prepared):
    items, _ = split_samples(prepared, [None] * 3, "blocks", 0.2, 64, 8, 0)
    validation = ValidationSamples(items, CONFIG)
    batch = validation[0]
    assert batch["labels"].shape == (1, 256, 256)
    assert np.array_equal(batch["labels"][0].numpy(), items[0].val)


def test_nothing_left_to_train_on_is_refused(prepared):
    from rsneo.errors import InputError

    empty = [replace(p, train=np.full_like(p.train, -1)) for p in prepared]
    with pytest.raises(InputError, match="no labelled pixels left to train on"):
        TrainingChips(empty, CONFIG, chip=64, batch_size=2, steps=1, seed=0)
    with pytest.raises(InputError, match="multiple of 32"):
        TrainingChips(prepared, CONFIG, chip=50, batch_size=2, steps=1, seed=0)
