"""What one training step receives: a packed `ModelInputs` plus the targets that only some objectives use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rsneo.model.inputs import ModelInputs


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
class TrainBatch:
    """`inputs` feed masked band-group reconstruction and the LM loss; `segmentation`, when present, the
    head."""

    inputs: ModelInputs
    segmentation: SegmentationBatch | None = None

    def to(self, device: torch.device | str) -> TrainBatch:
        seg = self.segmentation.to(device) if self.segmentation is not None else None
        return TrainBatch(self.inputs.to(device), seg)
