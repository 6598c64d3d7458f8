"""The change map: dates of one place -> P(no change), P(change) between the first and the last date, and for
from-to change the segmentation of both.

All dates of a window form one scene document (`scene` mask). An untrained change head is calibrated on this
scene (Otsu's cut of its feature distance); a head that combines its vote with the radiometric change
magnitude reads that magnitude relative to the scene's own cut (`SceneMagnitude`, measured once on the whole
scene), so every window is judged on the scene's terms.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.enums import Resampling

from rsneo.baselines import change_vector_magnitude, otsu_threshold
from rsneo.data.documents import window_documents
from rsneo.data.frames import BandLayout
from rsneo.heads.change import MAGNITUDE_SIGMA, ChangeHead, blur, magnitude_excess
from rsneo.heads.features import image_features
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.finetuned import is_finetuned
from rsneo.heads.system import System
from rsneo.io.dataset import data_bands
from rsneo.io.windows import overview_size, read_overview
from rsneo.predict.change_classes import change_legend, from_to_classifier
from rsneo.predict.inputs import Inputs
from rsneo.predict.sliding_window import MapSpec


@torch.inference_mode()
def calibrated_change_head(
    system: System, layouts: list[BandLayout], views: list[tuple[np.ndarray, np.ndarray]]
) -> ChangeHead:
    """A copy of an untrained change head whose threshold and scale fit this scene's feature distances.

    An untrained head is a feature distance whose typical size depends on the backbone; its threshold is set
    by Otsu's method on the distances of a reduced view of the whole scene, and its scale so that the 5th and
    95th percentiles sit about 5 logits from it.
    """
    head = copy.deepcopy(system.change)
    valid = np.logical_and.reduce([v for _, v in views])  # (h, w)
    pixels = np.stack([p for p, _ in views])[None]  # (1, dates, bands, h, w)
    inputs = window_documents(layouts, pixels, valid[None], system.config, "scene").to(system.device)
    features = image_features(system.model, inputs, head.config.early_layer, frames=len(views))
    a, b = head.embeddings(features, 0), head.embeddings(features, len(views) - 1)
    distance = (1.0 - (a * b).sum(1))[0].float().cpu().numpy()[valid]  # (valid pixels,)
    if distance.size < 2:
        return head
    threshold = otsu_threshold(distance)
    low, high = np.percentile(distance, [5, 95])
    head.threshold.fill_(threshold)
    head.log_scale.fill_(float(np.log(5.0 / max(high - threshold, threshold - low, 1e-6))))
    return head


@dataclass
class SceneMagnitude:
    """What the change head's magnitude term needs of the whole scene: each date's per-band mean and std and
    the Otsu cut of the change-vector magnitude, measured once on a decimated read (nearest: the pixels'
    own distribution, unlike an averaged overview), so that every window is judged on the scene's terms."""

    mean: np.ndarray  # (2, bands, 1, 1): first and last date
    std: np.ndarray  # (2, bands, 1, 1)
    cut: float

    @classmethod
    def measure(cls, first, last, max_side: int = 1024) -> SceneMagnitude:
        step = -(-max(first.width, first.height) // max_side)  # whole pixels: every `step`-th row and column
        shape = (-(-first.height // step), -(-first.width // step))
        reads = []
        for ds in (first, last):
            bands = data_bands(ds)
            pixels = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
            reads.append((pixels.astype(np.float64), ds.dataset_mask(out_shape=shape) > 0))
        valid = reads[0][1] & reads[1][1]
        if valid.sum() < 2:
            valid = np.ones_like(valid)
        values = [p[:, valid] for p, _ in reads]  # (bands, n) each
        mean = np.stack([v.mean(1) for v in values])[..., None, None]
        std = np.stack([v.std(1) for v in values])[..., None, None]
        std = np.where(std > 0, std, 1.0)
        magnitude = change_vector_magnitude((values[0] - mean[0, :, :, 0]) / std[0, :, :, 0],
                                            (values[1] - mean[1, :, :, 0]) / std[1, :, :, 0])  # fmt: skip
        field = np.zeros(shape)
        field[valid] = magnitude
        mask = torch.from_numpy(valid)[None, None]
        field = blur(torch.from_numpy(field)[None, None], MAGNITUDE_SIGMA / step, mask)[0, 0].numpy()
        return cls(mean, std, otsu_threshold(field[valid]))

    def excess(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray | None = None) -> torch.Tensor:
        """(B, bands, H, W) raw pixels of both dates (and their (B, H, W) valid mask) -> (B, 1, H, W)
        magnitude excess over the scene cut, blurred over the valid pixels."""
        a = (before - self.mean[0]) / self.std[0]
        b = (after - self.mean[1]) / self.std[1]
        magnitude = torch.from_numpy(np.sqrt(((b - a) ** 2).sum(1, keepdims=True)).astype(np.float32))
        mask = None if valid is None else torch.from_numpy(np.asarray(valid, bool))[:, None]
        return magnitude_excess(blur(magnitude, valid=mask), self.cut)


class ChangePredictor:
    """Windows of aligned dates (B, dates, bands, S, S) -> [P(no change), P(change), seg first, seg last]."""

    def __init__(
        self,
        system: System,
        layouts: list[BandLayout],
        class_names: list[str] | None,
        head: ChangeHead,
        magnitude: SceneMagnitude | None = None,
        votes: bool = True,
    ) -> None:
        self.system, self.layouts, self.head, self.magnitude = system, layouts, head, magnitude
        self.votes = votes or magnitude is None  # without the magnitude the head is all there is
        self.class_vectors = None
        if class_names:
            with torch.inference_mode():
                self.class_vectors = class_vectors(system, class_names)  # learnt classes first

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        system, dates = self.system, pixels.shape[1]
        features = None
        if self.votes or self.class_vectors is not None:
            inputs = window_documents(self.layouts, pixels, valid, system.config, "scene").to(system.device)
            features = image_features(system.model, inputs, self.head.config.early_layer, frames=dates)
        if self.magnitude is not None:
            excess = self.magnitude.excess(pixels[:, 0], pixels[:, -1], valid).to(system.device)
        if not self.votes:  # outside the head's training imagery: the magnitude alone
            logits = self.head.magnitude_alone(excess)
        else:
            logits = self.head(features, 0, dates - 1)  # (B, 2, S, S)
            if self.magnitude is not None:
                logits = self.head.combine(logits.float(), excess)
        out = [logits.softmax(1)]
        if self.class_vectors is not None:
            seg = system.segmentation
            if seg.config.early_layer != self.head.config.early_layer:
                features = image_features(system.model, inputs, seg.config.early_layer, frames=dates)
            for frame in (0, dates - 1):
                out.append(seg.probabilities(seg(features, self.class_vectors, frame)))  # (B, K + 1, S, S)
        return torch.cat(out, 1).float().cpu().numpy()


def change_predictor(
    system: System, inputs: Inputs, class_names: Sequence[str] | None = None, head_votes: bool = True
) -> ChangePredictor:
    """The change head (calibrated on this scene when the model folder did not train it) and, when the head
    combines it, the radiometric change magnitude measured on the whole scene; `head_votes` False (dates
    outside the head's training imagery) leaves the head's vote out when there is a magnitude to map with."""
    head = system.change
    names = list(class_names) if class_names else None
    if is_finetuned(head):  # fine-tuned on labelled pairs (`rsneo finetune`): its map alone, no magnitude
        return ChangePredictor(system, inputs.layouts, names, head)
    if "change" not in system.trained_heads:
        ref = inputs.datasets[0]
        shape = overview_size(ref.width, ref.height, 512, system.config.token_size)
        views = [read_overview(ds, shape) for ds in inputs.datasets]
        head = calibrated_change_head(system, inputs.layouts, views)
    first, last = inputs.datasets[0], inputs.datasets[-1]
    magnitude = SceneMagnitude.measure(first, last) if head.uses_magnitude else None
    return ChangePredictor(system, inputs.layouts, names, head, magnitude, votes=head_votes)


def head_calibration(head) -> tuple[float, ...]:
    """The numbers this scene set in the change head (the run's signature records them): the threshold and
    scale of the bundled kind; a fine-tuned head's calibration is its own (heads.json)."""
    if is_finetuned(head):
        return (head.config.bias,)
    return (float(head.threshold.detach()), float(head.log_scale.detach()))


def change_map(
    system: System,
    inputs: Inputs,
    class_names: Sequence[str] | None = None,
    head_votes: bool = True,
    untrained: tuple[str, ...] = (),
) -> MapSpec:
    """The change map of aligned dates: "no change"/"change", or from-to classes of `class_names` (plus "none
    of these"); its calibration is the head's threshold and scale on this scene. `rsneo change` and `rsneo
    ask` both map change with it, so an answer's changed share and the change map of the same dates come
    from one definition."""
    predictor = change_predictor(system, inputs, class_names, head_votes)
    n_classes = len(class_names) + 1 if class_names else None
    calibration = head_calibration(predictor.head)
    legend = change_legend(class_names, untrained)
    return MapSpec(predictor, legend, from_to_classifier(n_classes), calibration)
