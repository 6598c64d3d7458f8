"""Spectral patch embedding: NEO's patch embedding layer for any set of bands with known wavelengths.

NEO's first layer is Conv2d(3 -> vision hidden, 16, stride 16) + GELU + 2D rotary, then Conv2d(vision hidden
->
LLM hidden, 2, stride 2). Here the first convolution's kernel is assembled per band (in the spirit of DOFA's
wavelength-conditioned dynamic weights):

    kernel(band) = generator(wavelength) + correction[band key]          # (vision hidden, 16, 16)
    generator(wavelength) = linear interpolation, in log-wavelength, between learned anchor kernels
                            (one anchor per polarisation for radar)
    group kernel = stack over the group's bands * reference_band_count / bands

so any subset or order of bands works, and a band the model never saw gets the kernel of its spectral
neighbours. Initialised from NEO (`load_neo`), the anchors at 0.665/0.56/0.49 um hold NEO's R/G/B kernels and
corrections are zero, so an RGB group reproduces NEO's `vision_embeds` bit for bit.

Without gradients (inference), a group kernel is built once per band set and kept (`group_kernel`), keyed by
the band set and by the identity, storage, dtype and version counter of the kernel parameters: an optimizer
step, `load_state_dict` or `.to()` changes the key, so updated weights are never served stale. (An in-place
edit through `.data` bypasses the version counter; rsneo makes none, and `clear_kernel_cache` is there for
code that does.) With gradients the kernel is built anew each time, inside the autograd graph.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.model.config import RSNeoConfig
from rsneo.model.inputs import ImageInput
from rsneo.model.rope import patch_rope_2d
from rsneo.model.spectral import KNOWN_BAND_KEYS, SAR_KEYS, is_radar

NEO_RGB_UM = (0.665, 0.56, 0.49)  # NEO's channel order is R, G, B
KERNEL_CACHE_SIZE = 32  # band sets kept (least recently used dropped): a few per sensor and grouping


class SpectralPatchEmbedding(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        self.config = config
        v, p = config.vision_hidden_size, config.patch_size
        self.anchors = nn.Parameter(torch.empty(len(config.spectral_anchors_um), v, p, p))
        self.sar_kernels = nn.Parameter(torch.empty(len(SAR_KEYS), v, p, p))
        self.corrections = nn.Parameter(torch.zeros(len(KNOWN_BAND_KEYS), v, p, p))
        self.patch_bias = nn.Parameter(torch.zeros(v))
        self.dense = nn.Conv2d(v, config.hidden_size, config.merge_size, config.merge_size)
        self._kernels: OrderedDict[tuple, Tensor] = OrderedDict()  # see `group_kernel`; not a weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.anchors.is_meta:
            return
        std = self.config.initializer_range
        for p in (self.anchors, self.sar_kernels, self.dense.weight):
            nn.init.normal_(p, std=std)
        for p in (self.corrections, self.patch_bias, self.dense.bias):
            nn.init.zeros_(p)

    @torch.no_grad()
    def load_neo(self, patch_weight: Tensor, patch_bias: Tensor) -> None:
        """Take NEO's Conv2d(3 -> vision hidden) as the R, G, B anchors; other anchors start at their mean."""
        if patch_weight.shape[1] != 3:
            raise InputError(
                f"NEO patch_embedding.weight: expected 3 input channels, found {patch_weight.shape[1]}"
            )
        mean = patch_weight.mean(dim=1)
        self.anchors.copy_(mean.expand_as(self.anchors))
        self.sar_kernels.copy_(mean.expand_as(self.sar_kernels))
        anchors = list(self.config.spectral_anchors_um)
        for channel, wavelength in enumerate(NEO_RGB_UM):
            if wavelength not in anchors:
                raise InputError(
                    f"config spectral_anchors_um: NEO needs an anchor at {wavelength} um, found none"
                )
            self.anchors[anchors.index(wavelength)] = patch_weight[:, channel]
        self.corrections.zero_()
        self.patch_bias.copy_(patch_bias)

    def band_kernels(self, wavelengths: Tensor, band_keys: Sequence[str]) -> Tensor:
        """First-convolution kernel (vision hidden, bands, 16, 16) for bands in the given order."""
        if len(band_keys) != len(wavelengths):
            raise InputError(
                f"band group: {len(wavelengths)} wavelengths but {len(band_keys)} band keys; "
                "give one key per band"
            )
        log_anchor = torch.tensor(self.config.spectral_anchors_um, dtype=torch.float32).log()
        # host arithmetic read with `tolist` (the float32 values, as before): no device read, no host sync
        wl = wavelengths.detach().to("cpu", torch.float32)
        kernels = []
        for i, key in enumerate(band_keys):
            um = wl[i].tolist()
            if is_radar(um, key):
                if key not in SAR_KEYS:
                    raise InputError(
                        f"band {i}: radar wavelength {um} um needs a polarisation key, found {key!r}"
                    )
                kernel = self.sar_kernels[SAR_KEYS.index(key)]
            else:
                if not um > 0:
                    raise InputError(f"band {i} ({key!r}): expected a positive wavelength in um, found {um}")
                x = wl[i].log()
                left = torch.searchsorted(log_anchor, x, right=True).tolist() - 1
                left = min(max(left, 0), len(log_anchor) - 2)
                t = (
                    ((x - log_anchor[left]) / (log_anchor[left + 1] - log_anchor[left]))
                    .clamp(0.0, 1.0)
                    .tolist()
                )
                # exact at an anchor: (1 - 0) * A + 0 * B == A, bit for bit
                kernel = (1.0 - t) * self.anchors[left] + t * self.anchors[left + 1]
            if key in KNOWN_BAND_KEYS:
                kernel = kernel + self.corrections[KNOWN_BAND_KEYS.index(key)]
            kernels.append(kernel)
        return torch.stack(kernels, dim=1) * (self.config.reference_band_count / len(kernels))

    def _kernel_weights(self) -> tuple:
        """What a cached kernel depends on: each kernel parameter's identity, storage, dtype, device and
        version counter (bumped by every in-place update, optimizer steps included)."""
        return tuple(
            (id(p), p.data_ptr(), p.dtype, p.device, p._version)
            for p in (self.anchors, self.sar_kernels, self.corrections)
        )

    def clear_kernel_cache(self) -> None:
        self._kernels.clear()

    def group_kernel(self, wavelengths: Tensor, band_keys: Sequence[str]) -> Tensor:
        """`band_kernels` in the parameters' dtype; without gradients, built once per band set and weights."""
        if torch.is_grad_enabled():
            return self.band_kernels(wavelengths, band_keys).to(self.anchors.dtype)
        key = (tuple(wavelengths.tolist()), tuple(band_keys), self._kernel_weights())
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self.band_kernels(wavelengths, band_keys).to(self.anchors.dtype)
            self._kernels[key] = kernel
            while len(self._kernels) > KERNEL_CACHE_SIZE:
                self._kernels.popitem(last=False)
        self._kernels.move_to_end(key)
        return kernel

    def patch_grids(self, images: Sequence[ImageInput]) -> list[Tensor]:
        """Groups of one band set and one size, batched: each -> rotated patches (vision, H/16, W/16)."""
        first = images[0]
        bands, height, width = first.pixels.shape
        step = self.config.token_size
        if first.token_size != step:
            raise InputError(
                f"image: made for {first.token_size}-pixel tokens, but this model's tokens are {step} pixels"
            )
        if height % step or width % step:
            raise InputError(
                f"image: height and width must be multiples of {step} pixels, found {height}x{width}"
            )
        kernel = self.group_kernel(first.wavelengths_on_host, first.band_keys)
        pixels = torch.stack([im.pixels for im in images]).to(
            device=self.anchors.device, dtype=self.anchors.dtype
        )
        patches = F.gelu(F.conv2d(pixels, kernel, self.patch_bias, stride=self.config.patch_size))
        return [patch_rope_2d(p, self.config.rope_theta_vision) for p in patches]

    def forward(self, images: Sequence[ImageInput]) -> Tensor:
        """All band groups of a batch -> (total image tokens, hidden), in `images` order, row-major per group.

        Groups that share a band set (wavelengths and keys) and a size run as one convolution with one kernel.
        The 2x2 merge runs once over all groups zero-padded to the largest grid, channels-last, as NEO runs it
        (the convolution's summation order, so the last bits of NEO's vision_embeds, depend on that layout).
        """
        if not images:
            return self.anchors.new_zeros(0, self.config.hidden_size)
        buckets: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            signature = (tuple(im.wavelengths_on_host.tolist()), tuple(im.band_keys), tuple(im.pixels.shape))
            buckets.setdefault(signature, []).append(i)
        grids: list[Tensor] = [self.anchors.new_zeros(0)] * len(images)
        for indices in buckets.values():
            for i, grid in zip(indices, self.patch_grids([images[i] for i in indices]), strict=True):
                grids[i] = grid
        rows = max(g.shape[1] for g in grids)
        cols = max(g.shape[2] for g in grids)
        padded = grids[0].new_zeros(len(grids), rows, cols, grids[0].shape[0])  # (groups, rows, cols, vision)
        for i, g in enumerate(grids):
            padded[i, : g.shape[1], : g.shape[2]] = g.permute(1, 2, 0)
        merged = self.dense(padded.permute(0, 3, 1, 2)).permute(
            0, 2, 3, 1
        )  # (groups, rows/2, cols/2, hidden)
        m = self.config.merge_size
        return torch.cat(
            [
                merged[i, : g.shape[1] // m, : g.shape[2] // m].reshape(-1, merged.shape[-1])
                for i, g in enumerate(grids)
            ]
        )
