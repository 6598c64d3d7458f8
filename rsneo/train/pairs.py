"""Self-supervised simulated change pairs on the training chips, for the change objective and the change Q&A.

No redistributable dense change labels exist for the sample archives, so pairs are made: date 2 is date 1 (or
a real later date of the same place) with nuisance differences that must NOT count as change (per-band gain
and offset, noise, a smooth haze-like field, a one-pixel misregistration, per-date standardisation) plus
regions that must: pasted from another tile or another part of the tile (rotated), sometimes only partly
blended in, or recoloured (the same texture with another spectrum). Labels: pasted pixels that really differ =
1, the rest = 0; pasted pixels that happen to look like what they cover, wrapped borders of a shift and, for
real date pairs, pixels whose own spectral difference is large (a real change nobody labelled) are -1
(ignored). The Taizhou pair is never a source: it is the held-out change test.

Both `rsneo.train.change` (the change head) and `rsneo.train.corpus` (change questions) draw pairs here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo.model.inputs import ImageInput
from rsneo.train.batch import ChangeSource

# Landsat-like band groups (as landsat7_etm groups them), by sensor band name: the change pairs use the bands
# that Landsat, Sentinel-2 and most optical sensors share, so the head transfers to Landsat pairs.
LANDSAT_LIKE_GROUPS = {
    "sentinel2": {"rgb": ["B04", "B03", "B02"], "nir": ["B08"], "swir": ["B11", "B12"]},
}
CHANGED_DIFFERENCE = 0.6  # RMS over bands (standardised units) above which a pasted pixel counts as changed
REAL_UNCHANGED = 0.6  # RMS difference under which a pixel of a real date pair is trusted as unchanged


def _uniform(generator: torch.Generator, low: float, high: float, shape: Sequence[int] = ()) -> Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=generator)


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def stack_groups(frame: list[ImageInput]) -> Tensor:
    """A frame's band groups as one (bands, H, W) tensor."""
    return torch.cat([g.pixels for g in frame])  # (bands, H, W)


def _split(pixels: Tensor, like: list[ImageInput], time: float | None = None) -> list[ImageInput]:
    """(bands, H, W) back into `like`'s band groups."""
    out, start = [], 0
    for g in like:
        n = g.pixels.shape[0]
        out.append(ImageInput(pixels[start : start + n].contiguous(), g.wavelengths, g.band_keys, time))
        start += n
    return out


def standardise(pixels: Tensor) -> Tensor:
    """Each band to mean 0, std 1 over the tile: as `rsneo change` sees 8-bit pairs (own statistics per
    date)."""
    mean = pixels.mean(dim=(1, 2), keepdim=True)
    std = pixels.std(dim=(1, 2), keepdim=True).clamp(min=1e-3)
    return (pixels - mean) / std


def rms_difference(a: Tensor, b: Tensor) -> Tensor:
    """(H, W) root-mean-square difference over bands."""
    return (a - b).pow(2).mean(0).sqrt()


def _region(generator: torch.Generator, height: int, width: int) -> Tensor:
    """A random rectangle or ellipse (bool (H, W)), 6 px to half the tile a side: a field, a new block."""
    h, w = _randint(generator, 6, height // 2), _randint(generator, 6, width // 2)
    top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
    mask = torch.zeros(height, width, dtype=torch.bool)
    if float(torch.rand((), generator=generator)) < 0.5:
        mask[top : top + h, left : left + w] = True
        return mask
    y = torch.arange(height).float()[:, None] - (top + h / 2 - 0.5)
    x = torch.arange(width).float()[None, :] - (left + w / 2 - 0.5)
    return (y / (h / 2)) ** 2 + (x / (w / 2)) ** 2 <= 1.0


def _donor_pixels(generator: torch.Generator, donors: Sequence[Tensor], own: Tensor) -> Tensor:
    """Another tile of the batch, or this tile rotated and flipped (another place's content either way)."""
    if donors and float(torch.rand((), generator=generator)) < 0.7:
        return donors[_randint(generator, 0, len(donors) - 1)]
    turned = torch.rot90(own, _randint(generator, 1, 3), dims=(1, 2))
    return turned.flip(2) if float(torch.rand((), generator=generator)) < 0.5 else turned


def simulate_pair(
    source: ChangeSource, generator: torch.Generator, donors: Sequence[Tensor] = ()
) -> tuple[list[ImageInput], list[ImageInput], Tensor, list[str | None]]:
    """One simulated change pair from `source`: (date-1 groups, date-2 groups, labels (H, W), dates).

    `donors`: (bands, H, W) pixels of other tiles with the same bands and grid, to paste from.
    """
    frames = source.frames
    real = len(frames) > 1 and float(torch.rand((), generator=generator)) < 0.5
    t = _randint(generator, 0, len(frames) - 2) if real else _randint(generator, 0, len(frames) - 1)
    before = stack_groups(frames[t]).float()
    height, width = before.shape[-2:]
    labels = torch.zeros(height, width, dtype=torch.long)
    dates = [source.dates[t], source.dates[t + 1]] if real else [source.dates[t], None]
    if real:  # a real later date: only pixels that barely differ are trusted as unchanged
        after = stack_groups(frames[t + 1]).float().clone()
        difference = rms_difference(standardise(before), standardise(after))
        trusted = (difference < REAL_UNCHANGED) & (difference <= difference.median())
        labels[~trusted] = -1
    else:
        after = before.clone()
    pasted = torch.zeros(height, width, dtype=torch.bool)
    count = 0 if float(torch.rand((), generator=generator)) < 0.2 else _randint(generator, 1, 3)
    for _ in range(count):
        region = _region(generator, height, width)
        kind = float(torch.rand((), generator=generator))
        if kind < 0.3:  # the same ground, another spectrum (a field harvested or flooded, a roof replaced)
            gain = _uniform(generator, 0.5, 1.5, (before.shape[0], 1, 1))
            new = after * gain + _uniform(generator, -1.0, 1.0, (before.shape[0], 1, 1))
        else:  # another place's content, sometimes only partly blended in (a subtler change)
            donor = _donor_pixels(generator, donors, before)
            dy = _randint(generator, -height // 2, height // 2)
            dx = _randint(generator, -width // 2, width // 2)
            moved = torch.roll(donor, (dy, dx), dims=(1, 2))  # a different part of the donor
            alpha = 1.0 if kind < 0.8 else float(_uniform(generator, 0.4, 1.0))
            new = alpha * moved + (1 - alpha) * after
        after = torch.where(region[None], new, after)
        pasted |= region
    changed = pasted & (rms_difference(before, after) > CHANGED_DIFFERENCE)
    labels[pasted] = -1
    labels[changed] = 1
    # nuisance: per-band gain and offset, noise, sometimes a one-pixel misregistration (never change)
    bands = before.shape[0]
    gain, offset = _uniform(generator, 0.8, 1.2, (bands, 1, 1)), _uniform(generator, -0.3, 0.3, (bands, 1, 1))
    after = after * gain + offset
    after = after + _uniform(generator, 0.0, 0.1) * torch.randn(after.shape, generator=generator)
    # a smooth field (haze, illumination, phenology drifting across the tile): large but gradual, not change
    field = torch.randn((1, bands, 2, 2), generator=generator)
    field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=True)[0]
    after = after + _uniform(generator, 0.0, 0.2) * field
    before = before + _uniform(generator, 0.0, 0.05) * torch.randn(before.shape, generator=generator)
    if float(torch.rand((), generator=generator)) < 0.5:
        dy, dx = _randint(generator, -1, 1), _randint(generator, -1, 1)
        after = torch.roll(after, (dy, dx), dims=(1, 2))
        labels = torch.roll(labels, (dy, dx), dims=(0, 1))
        if dy:
            labels[(0 if dy > 0 else -1), :] = -1  # wrapped row
        if dx:
            labels[:, (0 if dx > 0 else -1)] = -1
    if float(torch.rand((), generator=generator)) < 0.5:  # each date on its own statistics, as 8-bit inputs
        before, after = standardise(before), standardise(after)
    if float(torch.rand((), generator=generator)) < 0.5:  # change is symmetric in time
        before, after, dates = after, before, dates[::-1]
    like = frames[t]
    return _split(before, like, like[0].time), _split(after, like, None), labels, dates


def changed_percent(labels: Tensor) -> float:
    """Percent of the pair's pixels labelled changed (ignored pixels count as unchanged)."""
    return 100.0 * float((labels == 1).float().mean())
