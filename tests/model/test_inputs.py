"""The model's input contract: image token ids from a config or an ids holder, token grids, device moves."""

from __future__ import annotations

import torch

from rsneo.model import ImageInput, ModelInputs, RSNeoConfig
from rsneo.model.inputs import ImageTokens


def test_image_tokens_read_from_a_config_or_an_ids_holder():
    cfg = RSNeoConfig.from_preset("tiny", img_start_token_id=7, img_end_token_id=8, img_context_token_id=9)
    assert ImageTokens.of(cfg) == ImageTokens(start=7, end=8, context=9)
    assert ImageTokens.of(ImageTokens(1, 2, 3)) == ImageTokens(1, 2, 3)


def test_token_grid_is_one_token_per_token_size_square():
    image = ImageInput(torch.zeros(2, 64, 96), torch.tensor([0.49, 0.56]), ("blue", "green"))
    assert image.grid == (2, 3) and image.num_tokens == 6  # NEO's 32-pixel tokens by default
    finer = ImageInput(image.pixels, image.wavelengths, image.band_keys, token_size=16)
    assert finer.grid == (4, 6) and finer.num_tokens == 24


def test_moving_a_batch_keeps_every_field_of_its_images():
    image = ImageInput(torch.ones(1, 32, 32), torch.tensor([0.665]), ("red",), time=12.5, token_size=16)
    ids = torch.tensor([[1, 2]])
    batch = ModelInputs(ids, torch.zeros(4, 1, 2), torch.zeros_like(ids), -torch.ones_like(ids), [image])
    moved = batch.to("cpu")
    assert moved.labels is None and torch.equal(moved.input_ids, ids)
    (got,) = moved.images
    assert (got.time, got.token_size, got.band_keys) == (12.5, 16, ("red",))
    assert torch.equal(got.pixels, image.pixels) and torch.equal(got.wavelengths, image.wavelengths)
