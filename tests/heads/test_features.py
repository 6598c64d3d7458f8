"""`rsneo.heads.features`: the backbone's side of the heads (prompt vectors, per-location image features)."""

from __future__ import annotations

import torch

from rsneo.data.documents import image_documents
from rsneo.heads.features import (
    backbone_states,
    encode_class_prompts,
    frame_pixels,
    gather_features,
    image_features,
)
from rsneo.model.inputs import ImageInput


def group(bands: int, wavelength: float, seed: int, size: int = 64) -> ImageInput:
    """A band group of `size` x `size` pixels (2 x 2 tokens at 32 pixels a token)."""
    pixels = torch.randn(bands, size, size, generator=torch.Generator().manual_seed(seed))
    keys = ("red", "green", "blue")[:bands] if bands <= 3 else tuple(f"b{i}" for i in range(bands))
    return ImageInput(pixels, torch.linspace(wavelength, wavelength + 0.2, bands), keys)


def test_class_vectors_do_not_depend_on_the_other_prompts(tiny_system):
    system = tiny_system
    cfg = system.segmentation.config
    with torch.no_grad():
        alone = encode_class_prompts(system.model, system.tokenizer, ["water"], cfg)
        together = encode_class_prompts(
            system.model, system.tokenizer, ["water", "built-up areas and bare soil"], cfg
        )
    torch.testing.assert_close(alone[0], together[0], atol=1e-5, rtol=1e-5)


def test_frame_pixels_stack_each_frames_band_groups_in_document_order():
    samples = [
        [[group(3, 0.5, 10 * s + f), group(1, 0.8, 10 * s + f + 5)] for f in range(2)] for s in range(2)
    ]
    images = [g for sample in samples for frame in sample for g in frame]
    pixels, wavelengths = frame_pixels(images, samples=2, frames=2)
    assert pixels.shape == (2, 2, 4, 64, 64)
    torch.testing.assert_close(pixels[1, 0, :3], samples[1][0][0].pixels, rtol=0, atol=0)
    torch.testing.assert_close(pixels[1, 1, 3], samples[1][1][1].pixels[0], rtol=0, atol=0)
    torch.testing.assert_close(
        wavelengths, torch.cat([samples[0][0][0].wavelengths, samples[0][0][1].wavelengths])
    )


def test_image_features_are_each_frames_token_states_averaged_over_its_band_groups(tiny_system):
    """Two samples of two frames of two band groups: the feature at (sample, frame, row, col) is the mean of
    the final states of that location's token in each group, read from the same backbone pass."""
    model, config = tiny_system.model, tiny_system.config
    samples = [
        [[group(3, 0.5, 10 * s + f), group(2, 0.8, 10 * s + f + 5)] for f in range(2)] for s in range(2)
    ]
    inputs = image_documents(samples, config, policy="scene")
    with torch.no_grad():
        features = image_features(model, inputs, early_layer=1, frames=2)
        last, hidden = backbone_states(model, inputs)
    assert features.last.shape == (2, 2, config.hidden_size, 2, 2)
    context = (inputs.input_ids == config.img_context_token_id).nonzero()  # (tokens, 2), row-major
    for s in range(2):
        at = context[context[:, 0] == s][:, 1].view(2, 2, 2, 2)  # (frame, group, row, col) -> column
        for f in range(2):
            expected = last[s, at[f]].mean(0)  # (rows, cols, hidden): the two groups averaged
            torch.testing.assert_close(features.last[s, f].permute(1, 2, 0), expected, rtol=1e-5, atol=1e-6)
            early = hidden[1][s, at[f]].mean(0)
            torch.testing.assert_close(features.early[s, f].permute(1, 2, 0), early, rtol=1e-5, atol=1e-6)


def test_gather_features_reads_planned_positions_like_image_features(tiny_system):
    """Training plans the image tokens' positions on the host; read there they give inference's features."""
    model, config = tiny_system.model, tiny_system.config
    samples = [[[group(3, 0.5, s)]] for s in range(3)]
    inputs = image_documents(samples, config)
    with torch.no_grad():
        inferred = image_features(model, inputs, early_layer=1)
        last, hidden = backbone_states(model, inputs)
    rows, cols = (inputs.input_ids == config.img_context_token_id).nonzero(as_tuple=True)
    pixels, wavelengths = frame_pixels(inputs.images, 3, 1)
    planned = gather_features(last, hidden[1], rows, cols, (2, 2), pixels, wavelengths)
    for name in ("last", "early", "pixels"):
        torch.testing.assert_close(getattr(planned, name), getattr(inferred, name), rtol=0, atol=0)
