"""What one training step receives: a packed `ModelInputs` plus the targets that only some objectives use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rsneo.model.inputs import ImageInput, ModelInputs


@dataclass
class SegmentationBatch:
    """Labelled chips for label-as-text segmentation: one image document per row (`image_documents`).

    `labels` (rows, height, width) long index `class_names` (words); -1 marks unlabelled pixels.
    """

    inputs: ModelInputs
    labels: Tensor  # (rows, height, width) long
    class_names: tuple[str, ...]

    def to(self, device: torch.device | str) -> SegmentationBatch:
        return SegmentationBatch(self.inputs.to(device), self.labels.to(device), self.class_names)


@dataclass
class ChangeSource:
    """Dates of one place that the change objective turns into a simulated change pair at step time.

    `frames[t]` are the band groups of date t (all dates: same bands, same grid); with one date the second
    one is simulated from it, with several a real later date may serve as the second (`dates`: YYYY-MM-DD or
    None each).
    """

    frames: list[list[ImageInput]]
    dates: list[str | None]

    @property
    def signature(self) -> tuple:
        """Band keys and pixel shape: sources with equal signatures can share one change batch."""
        return tuple((g.band_keys, tuple(g.pixels.shape)) for g in self.frames[0])


@dataclass
class ChangeBatch:
    """Two-date scene documents (`scene` mask) with per-pixel change labels (1 changed, 0 not, -1 unknown)."""

    inputs: ModelInputs
    labels: Tensor  # (rows, height, width) long

    def to(self, device: torch.device | str) -> ChangeBatch:
        return ChangeBatch(self.inputs.to(device), self.labels.to(device))


@dataclass
class TrainBatch:
    """`inputs` feed masked band-group reconstruction and the LM loss; `segmentation`, when present, the
    head; `change` sources, when present, the change objective (pairs are simulated at step time)."""

    inputs: ModelInputs
    segmentation: SegmentationBatch | None = None
    change: list[ChangeSource] | None = None

    def to(self, device: torch.device | str) -> TrainBatch:
        seg = self.segmentation.to(device) if self.segmentation is not None else None
        return TrainBatch(self.inputs.to(device), seg, self.change)
