"""`data.band_groups=fold`: every frame's band groups become one group, the frame's image tokens shrink to
one per 32x32 pixels, and the model trains on the folded documents."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from rsneo.errors import InputError
from rsneo.train.datamodule import apply_band_groups, collate


def test_folding_a_flood_tile_keeps_its_bands_and_text_with_a_sixth_of_the_image_tokens(
    flood_samples, image_tokens
):
    sample = flood_samples[0]
    folded = apply_band_groups(sample, "fold", image_tokens)
    doc, fdoc = sample.document, folded.document
    assert len(doc.groups) == 6 and len(fdoc.groups) == 1  # 5 Sentinel-2 groups + VV/VH -> one group
    [group] = fdoc.groups
    assert group.pixels.shape == (15, 64, 64)  # 13 optical bands + 2 polarisations
    assert torch.equal(group.pixels, torch.cat([g.pixels for g in doc.groups]))
    assert group.band_keys == tuple(k for g in doc.groups for k in g.band_keys)
    context = image_tokens.context
    assert doc.ids.count(context) == 6 * 4 and fdoc.ids.count(context) == 4  # 64 px = 2 x 2 tokens per group
    text = [(i, learn) for i, learn in zip(doc.ids, doc.learn, strict=True) if i != context]
    assert [(i, learn) for i, learn in zip(fdoc.ids, fdoc.learn, strict=True) if i != context] == text
    assert len(folded.chip.groups) == 1 and folded.chip.labels is sample.chip.labels
    assert apply_band_groups(sample, "sensor", image_tokens) is sample


def test_folded_batches_run_through_the_model_and_unknown_modes_are_refused(
    flood_samples, image_tokens, tiny_model
):
    folded = [apply_band_groups(s, "fold", image_tokens) for s in flood_samples[:2]]
    batch = collate(folded, image_tokens, pad_id=0)
    loss = tiny_model(batch.inputs).loss
    assert torch.isfinite(loss)
    expected = r"data.band_groups: expected one of \['sensor', 'fold'\], got 'bands'"
    with pytest.raises(InputError, match=expected):
        apply_band_groups(flood_samples[0], "bands", image_tokens)


def test_prediction_groups_bands_as_the_model_was_trained(shared_data):
    from rsneo.data.frames import band_layout, model_band_groups
    from rsneo.model.config import RSNeoConfig

    raster = next((shared_data / "sen1floods11" / "S2").glob("*_S2Hand.tif"))
    sensor = band_layout(raster).groups
    assert len(sensor) == 5  # the bundled model's (sensor) groups of 13 Sentinel-2 bands
    assert band_layout(raster, band_groups="fold").groups == (tuple(i for g in sensor for i in g),)
    config = RSNeoConfig.from_preset("tiny")
    assert model_band_groups(config) == "sensor"  # models without a record were trained with sensor groups
    config = replace(config, band_groups="fold")
    assert model_band_groups(RSNeoConfig.from_dict(config.to_dict())) == "fold"  # travels in config.json
