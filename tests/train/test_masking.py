"""Masked band-group reconstruction: what gets hidden, how pixels are hidden, and token order of the
targets."""

from __future__ import annotations

import pytest
import torch

from rsneo.data.documents import DocumentBuilder
from rsneo.train.corpus import TrainingSample
from rsneo.train.datamodule import collate
from rsneo.train.masking import (
    BandDecoder,
    apply_mask,
    choose_mask,
    frame_keys,
    image_token_slots,
    patchify,
)


def test_multi_group_frames_hide_whole_groups_and_keep_at_least_one(flood_samples, image_tokens):
    batch = collate(flood_samples[:3], image_tokens, pad_id=0)
    inputs = batch.inputs
    mask = choose_mask(inputs, image_tokens.context, 0.5, torch.Generator().manual_seed(0))
    slots = image_token_slots(inputs, image_tokens.context)
    keys = frame_keys(inputs, slots)
    assert len(set(keys)) == 3 and len(inputs.images) == 3 * 6  # 5 Sentinel-2 groups + VV/VH per frame
    for frame in set(keys):
        grids = [g for g, k in zip(mask.grids, keys, strict=True) if k == frame]
        hidden = [bool(g.all()) for g in grids]
        assert all(bool(g.all()) or not bool(g.any()) for g in grids)  # whole groups only
        assert hidden.count(True) == 3  # round(0.5 * 6) groups hidden, the others seen


def test_single_group_frames_hide_a_share_of_patches(flood_samples, tokenizer, image_tokens):
    rgb = flood_samples[0].document.groups[1]  # one band group alone in its frame
    doc = DocumentBuilder(tokenizer, image_tokens).frame([rgb]).end()
    inputs = collate([TrainingSample(doc)], image_tokens, pad_id=0).inputs
    mask = choose_mask(inputs, image_tokens.context, 0.5, torch.Generator().manual_seed(1))
    assert mask.grids[0].shape == (2, 2) and int(mask.grids[0].sum()) == 2


def test_apply_mask_zeroes_exactly_the_hidden_patches(flood_samples, image_tokens):
    inputs = collate(flood_samples[:1], image_tokens, pad_id=0).inputs
    mask = choose_mask(inputs, image_tokens.context, 0.5, torch.Generator().manual_seed(2))
    masked = apply_mask(inputs, mask)
    for before, after, grid in zip(inputs.images, masked.images, mask.grids, strict=True):
        size = before.token_size  # the model's token side, carried by each image
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                window = (slice(None), slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size))
                expected = torch.zeros_like(before.pixels[window]) if grid[r, c] else before.pixels[window]
                assert torch.equal(after.pixels[window], expected)
    assert masked.input_ids is inputs.input_ids  # tokens and positions are untouched


@pytest.mark.parametrize("size", [32, 16])  # NEO's token side, and a model with smaller tokens
def test_patchify_orders_tokens_row_major_like_the_backbone(size):
    pixels = torch.arange(2 * 2 * size * 3 * size, dtype=torch.float32).reshape(2, 2 * size, 3 * size)
    patches = patchify(pixels, size)  # (tokens, bands, size**2)
    assert patches.shape == (6, 2, size * size)
    expected = pixels[1, size : 2 * size, size : 2 * size]  # row 1, column 1
    assert torch.equal(patches[4, 1].reshape(size, size), expected)


def test_band_decoder_tells_bands_apart_by_wavelength():
    decoder = BandDecoder(hidden_size=16, token_size=32)
    torch.nn.init.normal_(decoder.band_code.weight)
    out = decoder(torch.randn(5, 16), torch.tensor([0.49, 0.842, 55465.0]))
    assert out.shape == (5, 3, 32 * 32)
    assert not torch.allclose(out[:, 0], out[:, 1]) and not torch.allclose(out[:, 1], out[:, 2])
