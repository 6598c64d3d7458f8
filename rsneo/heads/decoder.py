"""The light pixel decoder both dense heads share (segmentation and change): token grid -> full resolution.

The image tokens' last and early-layer hidden states (one per 32x32 pixels) are mixed at 1/8 resolution and
upsampled; a wavelength-conditioned per-pixel stem over the normalised bands (`SpectralStem`, any band set)
brings the edges back at full resolution. Each head owns its decoder's weights; this module owns the idea.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.model.spectral import SAR_KEYS

IGNORE = -1  # a label the dense heads' losses skip


class SpectralStem(nn.Module):
    """Per-pixel features of any band set: a 1x1 conv with per-band kernels made from wavelengths (DOFA).

    Radar bands all carry the one radar wavelength, so wavelengths alone give VV and VH the same kernel and
    the stem sees only their sum. With `polarisation`, a learnt row per polarisation key (`vv`, `vh`, `hh`,
    `hv`; zero at first) is added to those bands' kernels. The bundled heads were trained without it."""

    def __init__(self, channels: int, frequencies: int = 8, polarisation: bool = False) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.kernel = nn.Sequential(nn.Linear(2 * frequencies + 1, 64), nn.GELU(), nn.Linear(64, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        # zeros draw no random numbers and add nothing to an optical band's kernel, so a head starts as one
        # without them (training then differs in the last bits: the gradient norm sums one more tensor)
        self.polarisations = nn.Parameter(torch.zeros(len(SAR_KEYS), channels)) if polarisation else None

    def forward(self, pixels: Tensor, wavelengths: Tensor, band_keys: Sequence[str] = ()) -> Tensor:
        # pixels (B, bands, H, W), wavelengths (bands,) micrometres, band_keys (bands,) -> (B, channels, H, W)
        # the Fourier code in float32 (fine wavelength differences), then the head's own dtype (bf16 models)
        x = torch.log(wavelengths.float().clamp(min=1e-3)).unsqueeze(-1) * self.freqs  # (bands, F)
        code = torch.cat([torch.sin(x), torch.cos(x), x[:, :1] / self.freqs[0]], dim=-1)  # (bands, 2F+1)
        weight = self.kernel(code.to(self.bias.dtype))  # (bands, channels)
        if self.polarisations is not None:
            weight = weight + self.polarisation_rows(band_keys, pixels.shape[1]).to(weight.dtype)
        weight = weight / math.sqrt(pixels.shape[1])
        pixels = pixels.to(weight.dtype)
        return F.gelu(torch.einsum("bchw,cd->bdhw", pixels, weight) + self.bias[:, None, None])

    def polarisation_rows(self, band_keys: Sequence[str], bands: int) -> Tensor:
        """(bands, channels): each radar band's polarisation row, zero for the other bands."""
        if len(band_keys) != bands:  # a caller that forgot them would silently lose the polarisations
            raise ValueError(f"band keys: expected one per band ({bands}), got {len(band_keys)}")
        rows = [SAR_KEYS.index(k) if k in SAR_KEYS else len(SAR_KEYS) for k in band_keys]
        table = torch.cat([self.polarisations, torch.zeros_like(self.polarisations[:1])])  # optical: last
        return table[torch.tensor(rows, device=table.device)]


class PixelDecoder(nn.Module):
    """Token grid (1/32) -> full-resolution pixel embeddings, guided by the per-pixel stem.

    Spatial context is mixed at 1/8 resolution (3x3 conv). The first full-resolution layer is linear in
    [upsampled tokens, stem], and bilinear upsampling commutes with a 1x1 conv, so the token part is projected
    before upsampling; at full resolution only two narrow per-pixel layers run, so large rasters stay cheap.
    """

    def __init__(
        self, hidden_size: int, channels: int, stem_channels: int, dim: int, full_channels: int
    ) -> None:
        super().__init__()
        self.tokens = nn.Conv2d(2 * hidden_size, channels, 1)
        self.up = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())
        self.to_full = nn.Conv2d(channels, full_channels, 1)
        self.stem = SpectralStem(stem_channels)
        self.stem_to_full = nn.Conv2d(stem_channels, full_channels, 1, bias=False)
        self.out = nn.Conv2d(full_channels, dim, 1)

    @classmethod
    def from_config(cls, config: Any) -> PixelDecoder:
        """From a segmentation or change head config (both carry the decoder's sizes under these names)."""
        c = config
        return cls(c.hidden_size, c.decoder_channels, c.stem_channels, c.dim, c.full_channels)

    def context(self, last: Tensor, early: Tensor) -> Tensor:
        """Token features mixed spatially at 1/8 resolution: (N, hidden, rows, cols) -> (N, c, 4r, 4c)."""
        x = self.tokens(torch.cat([last, early], dim=1))  # (N, c, rows, cols)
        return self.up(F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))

    def fuse(
        self, projected: Tensor, pixels: Tensor, wavelengths: Tensor, band_keys: Sequence[str] = ()
    ) -> Tensor:
        """The per-pixel layers: `to_full` of the upsampled context (N, f, ...) with the stem of the pixels
        (N, bands, ...) -> (N, dim, ...). Any spatial layout works (`rsneo learn` passes labelled pixels)."""
        stem = self.stem(pixels, wavelengths, band_keys)
        return self.out(F.gelu(projected + self.stem_to_full(stem)))

    def forward(
        self, last: Tensor, early: Tensor, pixels: Tensor, wavelengths: Tensor, band_keys: Sequence[str] = ()
    ) -> Tensor:
        # last, early (N, hidden, rows, cols); pixels (N, bands, H, W) -> (N, dim, H, W)
        x = self.to_full(self.context(last, early))  # (N, f, 4r, 4c): projected before upsampling, 1/64 work
        x = F.interpolate(x, size=pixels.shape[-2:], mode="bilinear", align_corners=False)  # (N, f, H, W)
        return self.fuse(x, pixels, wavelengths, band_keys)  # (N, dim, H, W)
