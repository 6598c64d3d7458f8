"""The segmentation map: windows -> the segmentation head's class probabilities plus "none of these"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rsneo.data.documents import window_documents
from rsneo.data.frames import BandLayout
from rsneo.heads.features import image_features
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.segmentation import NONE_OF_THESE
from rsneo.heads.system import System
from rsneo.heads.vocabulary import ClassReadings
from rsneo.io.cog import ClassLegend
from rsneo.predict.sliding_window import MapSpec


class SegmentationPredictor:
    """Windows of one raster -> class probabilities plus "none of these"; class vectors computed once."""

    def __init__(
        self, system: System, layout: BandLayout, class_names: list[str], none_threshold: float | None = None
    ) -> None:
        self.system, self.layout, self.none_threshold = system, layout, none_threshold
        with torch.inference_mode():
            self.class_vectors = class_vectors(system, class_names)  # (K, hidden); learnt classes first

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        # pixels (B, bands, S, S), valid (B, S, S) -> (B, K + 1, S, S)
        head = self.system.segmentation
        inputs = window_documents([self.layout], pixels, valid, self.system.config).to(self.system.device)
        features = image_features(self.system.model, inputs, head.config.early_layer)
        probs = head.probabilities(head(features, self.class_vectors), self.none_threshold)
        return probs.float().cpu().numpy()


def segmentation_map(
    system: System,
    layout: BandLayout,
    class_names: Sequence[str],
    none_threshold: float | None = None,
    readings: ClassReadings | None = None,
    notes: tuple[str, ...] = (),
) -> MapSpec:
    """The segmentation map of a raster read as `layout`: the classes, then "none of these"; how the model
    read each name (`readings`: untrained, read as) is marked in the legend and `notes` travel with it."""
    names = list(class_names)
    readings = readings or ClassReadings()
    legend = ClassLegend.from_names(
        [*names, NONE_OF_THESE], untrained=readings.untrained, notes=notes, read_as=readings.read_as
    )
    return MapSpec(SegmentationPredictor(system, layout, names, none_threshold), legend)
