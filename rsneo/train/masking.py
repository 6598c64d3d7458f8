"""Masked band-group reconstruction: hide band groups (or patches) of image tokens, predict their pixels.

Unlabelled archives teach the model through this objective: with several band groups in a frame (RGB,
red edge, NIR, SWIR, SAR), whole groups are hidden and must be predicted from the others and from
earlier dates (cross-band and cross-sensor prediction); a frame with a single group hides a random share
of its token patches (the model's `token_size` pixels a side, 32 for NEO) instead. Hiding is done on the
pixels (set to 0, the normalised mean), so it works with any backbone that reads `ModelInputs`; the decoder
reads the hidden state of each hidden token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.model.inputs import ImageInput, ModelInputs


@dataclass
class TokenMask:
    """Which tokens of each `ImageInput` are hidden: one (rows, cols) bool grid per image, in `images`
    order."""

    grids: list[Tensor]

    @property
    def num_hidden(self) -> int:
        return int(sum(int(g.sum()) for g in self.grids))


def image_token_slots(inputs: ModelInputs, image_token_id: int) -> list[tuple[Tensor, Tensor]]:
    """(row index, token index) of each image's tokens, row-major, following the order of `inputs.images`."""
    rows, cols = torch.nonzero(inputs.input_ids == image_token_id, as_tuple=True)  # row-major order
    sizes = [im.num_tokens for im in inputs.images]
    if sum(sizes) != rows.numel():
        raise ValueError(f"batch has {rows.numel()} image tokens but its images need {sum(sizes)}")
    return list(zip(rows.split(sizes), cols.split(sizes), strict=True))


def frame_keys(inputs: ModelInputs, slots: list[tuple[Tensor, Tensor]]) -> list[tuple[int, int, float]]:
    """A key per image naming its frame: (row, document, T). All band groups of one `<img>` block share a
    T."""
    keys = []
    for row, col in slots:
        r, c = int(row[0]), int(col[0])
        keys.append((r, int(inputs.doc_ids[r, c]), float(inputs.positions[0, r, c])))
    return keys


def choose_mask(
    inputs: ModelInputs, image_token_id: int, ratio: float, generator: torch.Generator
) -> TokenMask:
    """Hide about `ratio` of the band groups of each multi-group frame (at least one, never all); in a
    single-group frame hide about `ratio` of its patches (at least one, never all when it has more than
    one)."""
    slots = image_token_slots(inputs, image_token_id)
    keys = frame_keys(inputs, slots)
    frames: dict[tuple[int, int, float], list[int]] = {}
    for index, key in enumerate(keys):
        frames.setdefault(key, []).append(index)
    grids = [torch.zeros(im.grid, dtype=torch.bool) for im in inputs.images]
    for members in frames.values():
        if len(members) > 1:
            count = min(len(members) - 1, max(1, round(ratio * len(members))))
            order = torch.randperm(len(members), generator=generator)[:count]
            for pick in order.tolist():
                grids[members[pick]][:] = True
        else:
            grid = grids[members[0]]
            n = grid.numel()
            count = min(max(n - 1, 1), max(1, round(ratio * n)))
            grid.view(-1)[torch.randperm(n, generator=generator)[:count]] = True
    return TokenMask(grids)


def apply_mask(inputs: ModelInputs, mask: TokenMask) -> ModelInputs:
    """A copy of `inputs` whose hidden tokens' pixel patches are zero (the normalised mean)."""
    images = []
    for image, grid in zip(inputs.images, mask.grids, strict=True):
        size = image.token_size
        keep = (~grid).to(image.pixels.dtype)  # (rows, cols)
        keep = keep.repeat_interleave(size, 0).repeat_interleave(size, 1).to(image.pixels.device)
        images.append(replace(image, pixels=image.pixels * keep))  # (bands, height, width)
    return replace(inputs, images=images)


def patchify(pixels: Tensor, token_size: int) -> Tensor:
    """(bands, H, W) -> (tokens, bands, token_size**2), tokens row-major, as the backbone orders them."""
    bands, height, width = pixels.shape
    x = pixels.reshape(bands, height // token_size, token_size, width // token_size, token_size)
    return x.permute(1, 3, 0, 2, 4).reshape(-1, bands, token_size * token_size)


def wavelength_features(wavelengths: Tensor, size: int = 16) -> Tensor:
    """Sinusoidal features of log-wavelength (um): optical and radar bands land far apart. (bands,) ->
    (bands, size)."""
    freqs = torch.exp(torch.linspace(0.0, math.log(64.0), size // 2, device=wavelengths.device))
    angle = torch.log(wavelengths.float().clamp_min(1e-3))[:, None] * freqs[None]  # (bands, size/2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class BandDecoder(nn.Module):
    """A small decoder from a token's hidden state to its pixels, for any band, by wavelength.

    The hidden state is normalised and modulated per band by a code of the band's wavelength (FiLM),
    then one linear layer gives the patch: (tokens, hidden), (bands,) -> (tokens, bands, token_size**2),
    `token_size` being the model's (`RSNeoConfig.token_size`).
    """

    def __init__(self, hidden_size: int, token_size: int, features: int = 16) -> None:
        super().__init__()
        self.token_size = token_size
        self.features = features
        self.norm = nn.LayerNorm(hidden_size)
        self.band_code = nn.Linear(features, hidden_size)
        self.to_pixels = nn.Linear(hidden_size, token_size * token_size)
        nn.init.zeros_(self.band_code.weight)
        nn.init.zeros_(self.band_code.bias)

    def forward(self, hidden: Tensor, wavelengths: Tensor) -> Tensor:
        code = self.band_code(
            wavelength_features(wavelengths, self.features).to(hidden.dtype)
        )  # (bands, hidden)
        z = self.norm(hidden)[:, None, :] * (1 + code[None])  # (tokens, bands, hidden)
        return self.to_pixels(z)  # (tokens, bands, token_size**2)


@dataclass
class MaskedTargets:
    """What masked band-group reconstruction reads, fixed on the host: where the hidden tokens sit in the
    batch (`rows`, `cols`: every image's hidden tokens, image after image), how many per image (`counts`),
    and their true normalised pixels. Images with no hidden token are left out."""

    rows: Tensor  # (hidden tokens,) long
    cols: Tensor  # (hidden tokens,) long
    counts: list[int]
    wavelengths: list[Tensor]  # (bands,) per image
    targets: list[Tensor]  # (count, bands, token_size**2) per image, from the unmasked pixels

    def to(self, device: torch.device | str) -> MaskedTargets:
        move = lambda ts: [t.to(device) for t in ts]
        return MaskedTargets(
            self.rows.to(device),
            self.cols.to(device),
            self.counts,
            move(self.wavelengths),
            move(self.targets),
        )


def masked_targets(
    images: list[ImageInput], mask: TokenMask, slots: list[tuple[Tensor, Tensor]]
) -> MaskedTargets | None:
    """The targets of `mask` over `images` (the unmasked originals; `slots` from `image_token_slots`), on
    the host; None when nothing is hidden."""
    rows, cols, counts, wavelengths, targets = [], [], [], [], []
    for image, grid, (row, col) in zip(images, mask.grids, slots, strict=True):
        picked = grid.reshape(-1).nonzero().flatten()  # host tensors: no device read
        if picked.numel() == 0:
            continue
        rows.append(row[picked])
        cols.append(col[picked])
        counts.append(picked.numel())
        wavelengths.append(image.wavelengths)
        targets.append(patchify(image.pixels, image.token_size)[picked])  # (count, bands, token_size**2)
    if not counts:
        return None
    return MaskedTargets(torch.cat(rows), torch.cat(cols), counts, wavelengths, targets)


def masked_band_loss(hidden: Tensor, targets: MaskedTargets, decoder: BandDecoder) -> Tensor:
    """Mean squared error between decoded and true (unmasked) normalised pixels over the hidden tokens.

    `hidden` is (batch, tokens, hidden) from the masked input. The hidden tokens of all images are gathered
    in one indexing step (one scatter in the backward pass), at positions fixed on the host, so no shape
    here depends on a device value.
    """
    states = hidden[targets.rows, targets.cols].split(targets.counts)  # per image (count, hidden)
    total = hidden.new_zeros((), dtype=torch.float32)
    count = 0
    for picked, wavelengths, target in zip(states, targets.wavelengths, targets.targets, strict=True):
        pred = decoder(picked, wavelengths)
        total = total + F.mse_loss(pred.float(), target.float(), reduction="sum")
        count += target.numel()
    return total / count
