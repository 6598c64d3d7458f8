"""`rsneo.train.batch`: what a step receives moves to a device whole, and change sources group by bands and
shape."""

from __future__ import annotations

import torch

from rsneo.model.inputs import ImageInput
from rsneo.model.positions import text_positions
from rsneo.train.batch import ChangeBatch, ChangeSource, SegmentationBatch, TrainBatch


def group(keys: tuple[str, ...], side: int = 32) -> ImageInput:
    return ImageInput(torch.zeros(len(keys), side, side), torch.linspace(0.49, 0.84, len(keys)), keys)


def inputs_with_an_image():
    inputs = text_positions(torch.tensor([[1, 2, 3, 4]]))
    inputs.images = [group(("red", "green", "blue"))]
    return inputs


def test_change_sources_with_the_same_bands_and_shape_share_a_signature():
    a = ChangeSource([[group(("red", "green")), group(("nir",))]] * 2, ["2020-01-01", "2021-01-01"])
    b = ChangeSource([[group(("red", "green")), group(("nir",))]], [None])  # one date: simulated later
    assert a.signature == b.signature == ((("red", "green"), (2, 32, 32)), (("nir",), (1, 32, 32)))
    other_bands = ChangeSource([[group(("red", "blue")), group(("nir",))]], [None])
    other_shape = ChangeSource([[group(("red", "green"), 64), group(("nir",), 64)]], [None])
    assert len({a.signature, other_bands.signature, other_shape.signature}) == 3


def test_train_batch_moves_inputs_and_segmentation_and_keeps_change_sources():
    labels = torch.tensor([[[0, 1], [-1, 1]]])
    seg = SegmentationBatch(inputs_with_an_image(), labels, ("water", "land"))
    change = [ChangeSource([[group(("red",))]], [None])]
    batch = TrainBatch(inputs_with_an_image(), seg, change)
    moved = batch.to("meta")  # a device without memory: every tensor must report it
    assert moved.inputs.input_ids.device.type == "meta" and moved.inputs.positions.device.type == "meta"
    assert moved.inputs.images[0].pixels.device.type == "meta"
    assert moved.segmentation.labels.device.type == "meta"
    assert moved.segmentation.inputs.images[0].wavelengths.device.type == "meta"
    assert moved.segmentation.class_names == ("water", "land")
    assert moved.change is change  # simulated into pairs at step time, on the step's device
    assert batch.inputs.input_ids.device.type == "cpu"  # the original is not changed


def test_batches_without_optional_parts_move_too():
    batch = TrainBatch(inputs_with_an_image()).to("meta")
    assert batch.segmentation is None and batch.change is None
    pairs = ChangeBatch(inputs_with_an_image(), torch.zeros(1, 32, 32, dtype=torch.long)).to("meta")
    assert pairs.labels.device.type == "meta" and pairs.labels.dtype == torch.long
