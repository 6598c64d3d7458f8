"""`rsneo.heads.decoder`: the pixel decoder both dense heads share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsneo.data.frames import band_layout
from rsneo.heads.decoder import PixelDecoder, SpectralStem

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


def test_spectral_stem_does_not_care_about_band_order(shared_data):
    import numpy as np
    import rasterio

    path = shared_data.joinpath(*S2)
    with rasterio.open(path) as src:
        raw = src.read(window=rasterio.windows.Window(0, 0, 128, 128)).astype(np.float32)
    groups = band_layout(path).images(raw, np.ones((128, 128), bool))
    pixels = torch.cat([g.pixels for g in groups])[None]  # (1, 13, 128, 128)
    wavelengths = torch.cat([g.wavelengths for g in groups])
    stem = SpectralStem(8)
    order = torch.randperm(13, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(stem(pixels, wavelengths), stem(pixels[:, order], wavelengths[order]))


def test_projecting_before_upsampling_is_the_decoder_of_upsampled_tokens():
    """The decoder projects the token context to the full-resolution width before upsampling (1/64 of the
    work); bilinear upsampling commutes with a 1x1 conv, so that is the layer applied after upsampling."""
    torch.manual_seed(0)
    decoder = PixelDecoder(hidden_size=16, channels=12, stem_channels=8, dim=6, full_channels=10).eval()
    last, early = torch.randn(2, 16, 3, 4), torch.randn(2, 16, 3, 4)
    pixels, wavelengths = torch.randn(2, 5, 96, 128), torch.tensor([0.49, 0.56, 0.66, 0.84, 1.6])
    with torch.no_grad():
        fast = decoder(last, early, pixels, wavelengths)
        context = F.interpolate(
            decoder.context(last, early), size=(96, 128), mode="bilinear", align_corners=False
        )
        slow = decoder.fuse(decoder.to_full(context), pixels, wavelengths)
    assert fast.shape == (2, 6, 96, 128)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)  # float32 sums in another order


S1 = ("sen1floods11", "S1", "Spain_7370579_S1Hand.tif")


def radar_pixels(shared_data, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """A window of the real Sentinel-1 chip, normalised as the model reads it: (1, 2, size, size) VV, VH."""
    import numpy as np
    import rasterio

    path = shared_data.joinpath(*S1)
    with rasterio.open(path) as src:
        raw = src.read(window=rasterio.windows.Window(0, 0, size, size)).astype(np.float32)
    groups = band_layout(path).images(raw, np.ones((size, size), bool))
    keys = tuple(k for g in groups for k in g.band_keys)
    return torch.cat([g.pixels for g in groups])[None], torch.cat([g.wavelengths for g in groups]), keys


def test_a_stem_tells_polarisations_apart_only_with_their_rows(shared_data):
    """VV and VH carry the one radar wavelength: a stem conditioned on wavelengths alone gives both the same
    kernel, so swapping them changes nothing. With polarisation rows (zero at first: the same output as
    without them), a trained stem sees which band is which."""
    pixels, wavelengths, keys = radar_pixels(shared_data)
    assert keys == ("vv", "vh") and wavelengths[0] == wavelengths[1]
    swapped = pixels[:, [1, 0]]
    torch.manual_seed(0)
    blind = SpectralStem(8)
    torch.manual_seed(0)
    rows = SpectralStem(8, polarisation=True)
    with torch.no_grad():
        torch.testing.assert_close(blind(pixels, wavelengths), blind(swapped, wavelengths))
        torch.testing.assert_close(rows(pixels, wavelengths, keys), blind(pixels, wavelengths))
        rows.polarisations.copy_(torch.randn_like(rows.polarisations))
        moved = (rows(pixels, wavelengths, keys) - rows(swapped, wavelengths, keys)).abs().max()
    assert moved > 0.1


def test_polarisation_rows_learn_what_the_sum_of_vv_and_vh_cannot_say(shared_data):
    """Which of VV and VH is the brighter (normalised) is a per-pixel fact a stem blind to polarisation
    cannot learn beyond guessing from their sum; with the rows it learns it."""
    pixels, wavelengths, keys = radar_pixels(shared_data)
    target = (pixels[0, 0] > pixels[0, 1]).float()  # (H, W)

    def accuracy(polarisation: bool) -> float:
        torch.manual_seed(0)
        stem, read = SpectralStem(8, polarisation=polarisation), torch.nn.Conv2d(8, 1, 1)
        optimizer = torch.optim.Adam([*stem.parameters(), *read.parameters()], lr=3e-2)
        for _ in range(150):
            logit = read(stem(pixels, wavelengths, keys))[0, 0]
            loss = F.binary_cross_entropy_with_logits(logit, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return ((read(stem(pixels, wavelengths, keys))[0, 0] > 0).float() == target).float().mean().item()

    blind, seen = accuracy(False), accuracy(True)
    print(f"blind {blind:.3f}, with rows {seen:.3f}, brighter VV share {target.mean():.3f}")
    assert seen > 0.95 and seen > blind + 0.1


def test_a_stem_with_polarisation_rows_refuses_a_call_without_band_keys():
    import pytest

    stem = SpectralStem(4, polarisation=True)
    with pytest.raises(ValueError, match="band keys: expected one per band"):
        stem(torch.randn(1, 2, 8, 8), torch.tensor([55465.0, 55465.0]))
