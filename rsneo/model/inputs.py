"""What the backbone consumes: the one contract between data/, model/, train/ and heads/.

A batch is a set of packed rows. Each row holds one or more documents (text with images inside
`<img>`...`</img>`).
An image block is one acquisition (frame); it may hold several band groups, each an `ImageInput`, whose
tokens sit
one after another between `<img>` and `</img>`. `images` lists every band group of the batch in the order in
which
their `<IMG_CONTEXT>` tokens appear (row by row, left to right).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

# Pixels per image token side where no model config says otherwise (`RSNeoConfig.token_size`; NEO's 16-pixel
# patches merged 2 x 2).
DEFAULT_TOKEN_SIZE = 32


@dataclass(frozen=True)
class ImageTokens:
    """NEO's image token ids: `<img>` opens a frame, `</img>` closes it, `<IMG_CONTEXT>` is one token."""

    start: int
    end: int
    context: int

    @classmethod
    def of(cls, source: Any) -> ImageTokens:
        """Read the ids from an `RSNeoConfig` or anything with `start`/`end`/`context`."""
        if hasattr(source, "img_context_token_id"):
            return cls(source.img_start_token_id, source.img_end_token_id, source.img_context_token_id)
        return cls(source.start, source.end, source.context)


@dataclass
class ImageInput:
    """One band group of one frame, normalised, ready for the spectral patch embedding.

    `wavelengths` are central wavelengths in micrometres (radar bands carry the radar wavelength, C-band
    55465 um,
    and are told apart by `band_keys`). `band_keys` are STAC `eo:common_name`s (`coastal`, `blue`, `green`,
    `red`,
    `rededge`, `nir`, `nir08`, `nir09`, `cirrus`, `swir16`, `swir22`, `pan`, `lwir`...) or SAR polarisations
    (`vv`, `vh`, `hh`, `hv`); "" for a band the model has no name for.
    """

    pixels: Tensor  # (bands, height, width), height and width multiples of `token_size`
    wavelengths: Tensor  # (bands,) micrometres
    band_keys: tuple[str, ...]
    time: float | None = None  # days since an epoch; used when T is spaced by acquisition date
    token_size: int = DEFAULT_TOKEN_SIZE  # pixels per token side of its model (`RSNeoConfig.token_size`)
    # the wavelengths' host copy, kept by `ModelInputs.to`: the patch embedding picks kernels by wavelength
    # on the host, and reading them back from an accelerator would stall every step (a host sync). A
    # `replace` that changes `wavelengths` must pass host_wavelengths=None with them.
    host_wavelengths: Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def wavelengths_on_host(self) -> Tensor:
        """The wavelengths as a CPU tensor, without a device read when the host copy is known."""
        if self.host_wavelengths is not None:
            return self.host_wavelengths
        return self.wavelengths if self.wavelengths.device.type == "cpu" else self.wavelengths.cpu()

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols): one token per `token_size` x `token_size` pixels."""
        return self.pixels.shape[-2] // self.token_size, self.pixels.shape[-1] // self.token_size

    @property
    def num_tokens(self) -> int:
        rows, cols = self.grid
        return rows * cols


@dataclass
class ModelInputs:
    """A packed batch.

    `positions` are Native-RoPE indexes T, H, W, S (float, so T may be spaced by dates and S is a spectral
    coordinate). `doc_ids` number the documents of a row (-1 = padding). `block_ids` mark bidirectional
    blocks:
    image tokens with the same non-negative id in the same document see each other in both directions;
    everything
    else is causal inside its document. The mask policy (`frame` or `scene`) is expressed only through
    `block_ids`.
    """

    input_ids: Tensor  # (batch, tokens) long
    positions: Tensor  # (4, batch, tokens) float: T, H, W, S
    doc_ids: Tensor  # (batch, tokens) long, -1 = padding
    block_ids: Tensor  # (batch, tokens) long, -1 = not an image token
    images: list[ImageInput] = field(default_factory=list)
    labels: Tensor | None = None  # (batch, tokens) long next-token targets, -100 = ignored

    def to(self, device: torch.device | str) -> ModelInputs:
        move = lambda t: None if t is None else t.to(device)
        return ModelInputs(
            input_ids=move(self.input_ids),
            positions=move(self.positions),
            doc_ids=move(self.doc_ids),
            block_ids=move(self.block_ids),
            images=[
                replace(
                    im,
                    pixels=im.pixels.to(device),
                    wavelengths=im.wavelengths.to(device),
                    host_wavelengths=im.host_wavelengths
                    if im.host_wavelengths is not None or im.wavelengths.device.type != "cpu"
                    else im.wavelengths,
                )
                for im in self.images
            ],
            labels=move(self.labels),
        )
