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
