"""Heads fine-tuned on a user's labels (`rsneo finetune`): a convolutional pixel branch fused with the tokens.

The token grid is 32 pixels a side: a building of 10 x 20 pixels is a fraction of one token. The light
decoder of the bundled heads (`PixelDecoder`) restores edges per pixel only; these heads add a small
convolutional pyramid over the raw normalised bands (1, 1/2, 1/4, 1/8 resolution; its first layer is the
wavelength-conditioned `SpectralStem` with polarisation rows, so any band set works, radar included), inject
the backbone's last and early-layer tokens at the coarsest level, and decode back to full resolution with skip
connections (a U-Net).

- `FinetunedChangeHead`: one pyramid for both dates (shared weights); at every level the two dates' maps and
  their absolute difference are fused, then decoded to one change logit per pixel. Same call as `ChangeHead`
  (features, before, after) -> (B, 2, H, W), "no change" fixed at 0, so `rsneo change` and `ask` use it as
  they use the bundled head.
- `FinetunedSegmentationHead`: the label-as-text `SegmentationHead` whose pixel decoder is the U-Net; class
  vectors still come from the class names' prompts, so datasets with different class names train one head.

`heads.json` marks these heads with `"decoder": "unet"`; `head_from_json` builds the right class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.heads.change import ChangeHead, ChangeHeadConfig
from rsneo.heads.decoder import IGNORE, SpectralStem
from rsneo.heads.features import ImageFeatures
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig

UNET = "unet"
WIDTHS = (24, 48, 64, 96)  # channels at 1/2, 1/4, 1/8, 1/16 resolution
STEM = 16  # per-pixel stem channels at full resolution


def conv_block(channels_in: int, channels_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class ConvPyramid(nn.Module):
    """Normalised bands of one date (N, bands, H, W) -> the per-pixel stem (N, stem, H, W) and feature maps at
    1/2, 1/4, ... resolution.

    Why no 3x3 layer at full resolution: it would cost as much as all coarser levels together (a CPU trains
    four times fewer steps); edges come back through the per-pixel stem in `FullResolution`."""

    def __init__(self, widths: tuple[int, ...], stem_channels: int, polarisation: bool = False) -> None:
        super().__init__()
        self.stem = SpectralStem(stem_channels, polarisation=polarisation)
        stages, previous = [], stem_channels
        for width in widths:
            stages.append(nn.Sequential(conv_block(previous, width, 2), conv_block(width, width)))
            previous = width
        self.stages = nn.ModuleList(stages)

    def forward(
        self, pixels: Tensor, wavelengths: Tensor, band_keys: Sequence[str] = ()
    ) -> tuple[Tensor, list[Tensor]]:
        stem = self.stem(pixels, wavelengths, band_keys)
        x, levels = stem, []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return stem, levels


class FullResolution(nn.Module):
    """Decoded features at 1/2 resolution + the per-pixel stem -> (N, out, H, W): bilinear upsampling of a
    1x1 projection, added to the stem's projection, one per-pixel layer (as `PixelDecoder.fuse`)."""

    def __init__(self, width: int, stem_channels: int, hidden: int, out: int) -> None:
        super().__init__()
        self.coarse = nn.Conv2d(width, hidden, 1)
        self.fine = nn.Conv2d(stem_channels, hidden, 1, bias=False)
        self.out = nn.Conv2d(hidden, out, 1)

    def forward(self, decoded: Tensor, stem: Tensor) -> Tensor:
        x = F.interpolate(self.coarse(decoded), size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(F.relu(x + self.fine(stem)))


class TokenInjector(nn.Module):
    """The backbone's last and early-layer tokens (N, hidden, rows, cols), added to the coarsest level.

    The projection starts at zero: training starts from the convolutional branch alone and lets the tokens in
    as far as they help (imagery the backbone never saw gives tokens that mostly do not)."""

    def __init__(self, hidden_size: int, width: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(2 * hidden_size, width, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, coarse: Tensor, last: Tensor, early: Tensor) -> Tensor:
        tokens = self.project(torch.cat([last, early], 1).to(coarse.dtype))  # (N, width, rows, cols)
        return coarse + F.interpolate(tokens, size=coarse.shape[-2:], mode="bilinear", align_corners=False)


class SkipDecoder(nn.Module):
    """Coarsest map + the finer levels' maps (U-Net skips) -> (N, widths[0], H/2, W/2)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.ups = nn.ModuleList(
            conv_block(widths[level + 1] + widths[level], widths[level]) for level in range(len(widths) - 1)
        )

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = levels[-1]
        for level in range(len(levels) - 2, -1, -1):
            skip = levels[level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.ups[level](torch.cat([x, skip], 1))
        return x


@dataclass
class FinetunedChangeHeadConfig:
    """Sizes and calibration of the fine-tuned change head; saved in heads.json."""

    hidden_size: int
    decoder: str = UNET
    widths: list[int] = field(default_factory=lambda: list(WIDTHS))
    stem_channels: int = STEM
    early_layer: int = 1
    tokens: bool = True  # inject the backbone's tokens (False: the convolutional branch alone)
    polarisation: bool = False  # the stem tells radar polarisations apart (False: heads fine-tuned before)
    bias: float = 0.0  # added to the change logit: the validation's best F1 cut moved to P = 0.5
    head_weight: float = 1.0  # `ChangeHead`'s combination with the change magnitude is not used:
    magnitude_weight: float = 0.0  # the fine-tuned head makes the map alone


class FinetunedChangeHead(nn.Module):
    """Two dates' normalised bands and tokens -> (no change, change) logits at full resolution."""

    def __init__(self, config: FinetunedChangeHeadConfig) -> None:
        super().__init__()
        self.config = config
        widths = tuple(config.widths)
        stem = config.stem_channels
        self.encoder = ConvPyramid(widths, stem, config.polarisation)
        self.tokens = TokenInjector(config.hidden_size, widths[-1]) if config.tokens else None
        self.fuse = nn.ModuleList(conv_block(3 * w, w, kernel=1) for w in widths)
        self.decoder = SkipDecoder(widths)
        self.full = FullResolution(widths[0], 3 * stem, widths[0], 1)

    uses_magnitude = False  # as `ChangeHead.uses_magnitude`: the map is this head's own

    def levels(self, features: ImageFeatures, frame: int) -> tuple[Tensor, list[Tensor]]:
        stem, maps = self.encoder(features.pixels[:, frame], features.wavelengths, features.band_keys)
        if self.tokens is not None:
            maps[-1] = self.tokens(maps[-1], features.last[:, frame], features.early[:, frame])
        return stem, maps

    def change_logit(self, features: ImageFeatures, before: int = 0, after: int = -1) -> Tensor:
        """(B, 1, H, W) change logit before the calibration `bias`."""
        frames = features.pixels.shape[1]
        (stem_a, a), (stem_b, b) = (
            self.levels(features, before % frames),
            self.levels(features, after % frames),
        )
        fused = [f(torch.cat([x, y, (x - y).abs()], 1)) for f, x, y in zip(self.fuse, a, b, strict=True)]
        return self.full(self.decoder(fused), torch.cat([stem_a, stem_b, (stem_a - stem_b).abs()], 1))

    def forward(self, features: ImageFeatures, before: int = 0, after: int = -1) -> Tensor:
        """Logits (B, 2, H, W): channel 0 "no change" (always 0), channel 1 "change"."""
        change = self.change_logit(features, before, after) + self.config.bias
        return torch.cat([torch.zeros_like(change), change], dim=1)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return change_loss(logits[:, 1], labels)

    def to_json(self) -> dict:
        return asdict(self.config)


def change_loss(logit: Tensor, labels: Tensor, dice: float = 1.0) -> Tensor:
    """Binary cross-entropy plus `dice` x soft Dice of the change class over the labelled pixels; labels
    (B, H, W): 0 unchanged, 1 changed, anything else ignored.

    Why Dice: changed pixels are 10-25 % of a pair; cross-entropy alone settles for "no change" on the
    small buildings, Dice weighs the change class by its own size."""
    labels = labels.long()
    known = (labels == 0) | (labels == 1)
    target = (labels == 1).to(logit.dtype)
    weight = known.to(logit.dtype)
    bce = F.binary_cross_entropy_with_logits(logit.float(), target.float(), weight.float(), reduction="sum")
    bce = bce / weight.sum().clamp(min=1)
    p = torch.sigmoid(logit.float()) * weight
    soft_dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + (target * weight).sum() + 1)
    return bce + dice * soft_dice


@dataclass
class FinetunedSegmentationHeadConfig(SegmentationHeadConfig):
    """`SegmentationHeadConfig` with the U-Net pixel decoder's sizes; saved in heads.json."""

    decoder: str = UNET
    widths: list[int] = field(default_factory=lambda: list(WIDTHS))
    tokens: bool = True
    polarisation: bool = False  # as `FinetunedChangeHeadConfig.polarisation`


class UNetPixelDecoder(nn.Module):
    """`PixelDecoder`'s call (last, early, pixels, wavelengths, band_keys) -> (N, dim, H, W), as a U-Net."""

    def __init__(self, config: FinetunedSegmentationHeadConfig) -> None:
        super().__init__()
        widths = tuple(config.widths)
        self.encoder = ConvPyramid(widths, config.stem_channels, config.polarisation)
        self.tokens = TokenInjector(config.hidden_size, widths[-1]) if config.tokens else None
        self.decoder = SkipDecoder(widths)
        self.full = FullResolution(widths[0], config.stem_channels, config.full_channels, config.dim)

    def forward(
        self, last: Tensor, early: Tensor, pixels: Tensor, wavelengths: Tensor, band_keys: Sequence[str] = ()
    ) -> Tensor:
        stem, maps = self.encoder(pixels, wavelengths, band_keys)
        if self.tokens is not None:
            maps[-1] = self.tokens(maps[-1], last, early)
        return self.full(self.decoder(maps), stem)


class FinetunedSegmentationHead(SegmentationHead):
    """Label-as-text segmentation with the U-Net pixel decoder (class vectors from prompts, as before)."""

    def __init__(self, config: FinetunedSegmentationHeadConfig) -> None:
        super().__init__(config)
        self.decoder = UNetPixelDecoder(config)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy plus the mean soft Dice of the classes present (rare classes weigh as much)."""
        labels = labels.long()
        labels = torch.where((labels < 0) | (labels >= logits.shape[1]), IGNORE, labels)
        ce = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
        known = (labels >= 0).unsqueeze(1).float()
        p = logits.float().softmax(1) * known
        target = F.one_hot(labels.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2).float() * known
        dims = (0, 2, 3)
        dice = 1 - (2 * (p * target).sum(dims) + 1) / (p.sum(dims) + target.sum(dims) + 1)
        present = target.sum(dims) > 0
        return ce + (dice * present).sum() / present.sum().clamp(min=1)


def is_finetuned(head: nn.Module) -> bool:
    return getattr(head.config, "decoder", None) == UNET


def head_from_json(name: str, options: dict[str, Any]) -> nn.Module:
    """A head of heads.json (`name` "segmentation" or "change"): the fine-tuned kind where the entry says
    `"decoder": "unet"`, else the bundled kind."""
    finetuned = options.get("decoder") == UNET
    if name == "change":
        return (
            FinetunedChangeHead(FinetunedChangeHeadConfig(**options))
            if finetuned
            else ChangeHead(ChangeHeadConfig(**options))
        )
    if finetuned:
        return FinetunedSegmentationHead(FinetunedSegmentationHeadConfig(**options))
    return SegmentationHead(SegmentationHeadConfig(**options))
